/* main.c - the loxstream command: global options and the subcommand table. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "config.h"
#ifdef HAVE_MALLOC_H
#include <malloc.h>
#endif
#include "cli.h"
#include "loxstream/error.h"
#include "loxstream/linalg.h"
#include "loxstream/sigbus.h"

#include <jansson.h>
#include "loxstream/xxh.h"

static const struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommands[] = {
    {"analyze", cmd_analyze, "R_align, R_ft and spectra per matrix, as TSV"},
    {"apply", cmd_apply, "write the LoX-extrapolated model (base + aligned -> output)"},
    {"factor", cmd_factor, "write the top-K factors of every matrix, for apply/lora --factors"},
    {"inspect", cmd_inspect, "list the tensors of a checkpoint, one per line"},
    {"lora", cmd_lora, "export the LoX update as a PEFT LoRA adapter"},
    {"synth", cmd_synth, "generate a synthetic base/aligned/finetuned model triplet"},
    {"verify", cmd_verify, "check an apply output against its checksums and journal"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: loxstream COMMAND [OPTION]...\n"
               "Make an aligned LLM robust to fine-tuning with LoX (low-rank extrapolation),\n"
               "streaming safetensors checkpoints of any size in bounded memory.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f, "  %-9s %s\n", "help", "this help; help COMMAND: that command's options");
    fprintf(f, "\nGlobal options:\n"
               "  -h, --help     show this help (COMMAND --help: that command's options)\n"
               "  -V, --version  show version, BLIS kernels and library versions\n\n"
               "Exit status: 0 success, 1 runtime error, 2 usage error, 3 invalid input,\n"
               "4 verification failed, 5 output directory refused.  See loxstream(1).\n"
               "Report bugs to %s.  License: BSD-2-Clause (see LICENSE).\n",
            PACKAGE_BUGREPORT);
}

static const struct subcommand *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(name, subcommands[i].name))
            return &subcommands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    fprintf(stderr, "loxstream: unknown command '%s' (try 'loxstream --help')\n", name);
    return LX_EUSAGE;
}

/* loxstream help [COMMAND]: the top-level help, or COMMAND --help. */
static int help(int argc, char **argv)
{
    if (argc < 3) {
        usage(stdout);
        return 0;
    }
    if (argc > 3) {
        fprintf(stderr, "loxstream: help: one COMMAND at most (try 'loxstream help')\n");
        return LX_EUSAGE;
    }
    const struct subcommand *c = find_command(argv[2]);
    if (!c)
        return unknown_command(argv[2]);
    static char opt[] = "--help";
    char *args[] = {argv[2], opt, NULL};
    return c->run(2, args);
}

static int version(void)
{
    printf("loxstream %s\n", PACKAGE_VERSION);
    lx_status st = lx_linalg_init(0);
    if (st != LX_OK)
        return cli_report(st);
    printf("%s\n", lx_linalg_describe());
    printf("libFLAME %s, jansson %s, xxHash %u.%u.%u\n", lx_flame_version(), JANSSON_VERSION,
           XXH_VERSION_MAJOR, XXH_VERSION_MINOR, XXH_VERSION_RELEASE);
    return 0;
}

int cli_report(int status)
{
    /* lx_fail escaped any control byte of a quoted name already (error.c) */
    if (status != LX_OK)
        fprintf(stderr, "loxstream: %s\n", *lx_errmsg() ? lx_errmsg() : "failed");
    return status;
}

/* libgomp's default wait policy spins between parallel regions; on the
 * small VMs loxstream targets a spinning thread slows the other one down
 * (a 4096 x 11008 matrix took 1.1 s with 2 threads spinning, 0.53 s with
 * them sleeping, 0.69 s on 1 thread).  libgomp reads the policy from the
 * environment when it loads, before main, so set it and exec again once,
 * unless the user chose a policy. */
static void prefer_passive_openmp(char **argv)
{
    if (getenv("OMP_WAIT_POLICY"))
        return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the default policy */
}

/* glibc raises its mmap threshold to the size of each large block freed
 * (up to 32 MiB), after which the solver's buffers come from the heap and
 * what is freed between tensors stays resident there: 77 MiB of heap at
 * the llama3-70b peak for 57 MiB live.  A fixed threshold keeps blocks of
 * 1 MiB and more in mappings of their own, returned when freed (peak
 * anonymous memory 118 -> 102 MiB there, bench/RESULTS.md session 5). */
static void unmap_large_blocks(void)
{
#if defined(HAVE_MALLOPT) && defined(M_MMAP_THRESHOLD)
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
}

int main(int argc, char **argv)
{
    prefer_passive_openmp(argv);
    unmap_large_blocks();
    if (argc < 2) {
        usage(stderr);
        return LX_EUSAGE;
    }
    if (lx_sigbus_install() != LX_OK)
        lx_warn("%s", lx_errmsg());
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "help"))
        return help(argc, argv);
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version"))
        return version();
    const struct subcommand *c = find_command(cmd);
    return c ? c->run(argc - 1, argv + 1) : unknown_command(cmd);
}
