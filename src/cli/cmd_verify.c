/* cmd_verify.c - loxstream verify: check an apply output directory against
 * its checksum list and journal (lx_verify_output). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"
#include "loxstream/parse.h"
#include "loxstream/verify.h"

static void usage(FILE *f)
{
    fputs("Usage: loxstream verify [OPTION]... DIR\n"
          "Check an output directory of loxstream apply: every file against\n"
          "loxstream.xxh3, every tensor against its journal record, every shard's\n"
          "header against the run's records, and whether the run was completed.  Each\n"
          "problem, and each journal line ignored, is printed on stderr, then a summary.\n\n"
          "  -q, --quiet  print problems only, no summary\n"
          "  -h, --help   show this help\n\n"
          "Exit status: 0 complete and intact, 4 incomplete, damaged or not a loxstream\n"
          "output, 1 runtime error, 2 usage error.\n",
          f);
}

static void print_problem(void *ctx, const char *msg)
{
    fprintf(stderr, "loxstream: verify: %s\n", msg);
}

int cmd_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int quiet = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "loxstream verify: unknown option '%s' (try 'loxstream verify --help')\n",
                    argv[optind - 1]);
            return LX_EUSAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "loxstream verify: %s (try 'loxstream verify --help')\n",
                argc == optind ? "missing DIR" : "only one DIR is expected");
        return LX_EUSAGE;
    }
    const char *dir = argv[optind];
    lx_verify_result res;
    lx_status st = lx_verify_output(dir, print_problem, NULL, &res);
    if (st != LX_OK)
        return cli_report(st);
    if (!quiet) {
        char hs[32];
        fprintf(stderr, "verify: %s: complete and intact: %zu files, %zu tensors, %s checked\n",
                dir, res.files, res.tensors, lx_format_size(res.bytes, hs, sizeof hs));
    }
    return 0;
}
