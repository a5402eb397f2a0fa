/* kernel_choice.h - private to src/numeric/: whether one of loxstream's own
 * kernels runs (pass_kernel.c, bf16_kernel.c), decided once per process:
 * the CPU has what it needs and the environment's switch does not turn it
 * off. */
#ifndef LOXSTREAM_KERNEL_CHOICE_H
#define LOXSTREAM_KERNEL_CHOICE_H

#include <stdlib.h>
#include <string.h>

/* *usable: -1 until decided, then 0 or 1 (a static of the caller's); on
 * unless the environment variable `var` is `off` or cpu() says no. */
static inline int lx_kernel_choice(int *usable, const char *var, const char *off,
                                   int (*cpu)(void))
{
    int u = __atomic_load_n(usable, __ATOMIC_RELAXED);
    if (u < 0) {
        const char *env = getenv(var);
        u = !(env && strcmp(env, off) == 0) && cpu();
        __atomic_store_n(usable, u, __ATOMIC_RELAXED);
    }
    return u;
}

#endif
