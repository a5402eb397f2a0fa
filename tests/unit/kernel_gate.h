/* kernel_gate.h - the start of test_pass_kernel and test_bf16_kernel: with
 * the environment's switch `var`=`off` set, the kernel must be off (else a
 * failure) and the test skips; without the CPU for it, the test skips. */
#ifndef LOXSTREAM_TEST_KERNEL_GATE_H
#define LOXSTREAM_TEST_KERNEL_GATE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -1: run the tests; else the exit status (1 or 77). */
static inline int kernel_gate(const char *var, const char *off, int (*on)(void),
                              const char *without)
{
    const char *env = getenv(var);
    if (env && strcmp(env, off) == 0) {
        if (on()) {
            fprintf(stderr, "%s=%s did not turn the kernel off\n", var, off);
            return 1;
        }
        printf("SKIP: %s=%s\n", var, off);
        return 77;
    }
    if (!on()) {
        printf("SKIP: %s\n", without);
        return 77;
    }
    return -1;
}

#endif
