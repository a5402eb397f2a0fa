/* cmd_factor.c - loxstream factor: options -> lx_factor_run. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "loxstream/factor.h"
#include "loxstream/parse.h"

static void usage(FILE *f)
{
    fputs("Usage: loxstream factor --base CKPT --aligned CKPT --output DIR [OPTION]...\n"
          "Write the top-K singular triplets of dW = aligned - base of every matrix to\n"
          "DIR/" LX_FACTOR_FILE " (NAME.lox_U, NAME.lox_S, NAME.lox_V, NAME.lox_info,\n"
          "NAME.lox_inputs), for apply --factors and lora --factors.\n\n"
          "  -b, --base CKPT         base (pre-alignment) checkpoint: directory or .safetensors\n"
          "  -a, --aligned CKPT      aligned checkpoint\n"
          "      --revision REV      ref or commit of CKPTs given as Hugging Face model IDs\n"
          "  -o, --output DIR        output directory: new or empty, or an earlier run's\n"
          "                          output with the same options and inputs (resumed)\n"
          "      --restart           discard the earlier run's output in DIR and start over\n"
          "      --part I/N          compute only part I of N (as apply --part)\n"
          "  -k, --rank K            rank of the factors (default 6; at least 1): later runs\n"
          "                          use any rank up to K; the passes certify every one\n"
          "      --tol T             accuracy target (default 3e-4)\n"
          "      --power-iters Q     instead of --tol: exactly Q power iterations (Q+1 passes)\n"
          "      --max-passes N      cap of passes with --tol (default 12)\n"
          "      --oversample P      extra sketch columns (default 10)\n"
          "      --seed S            seed of the random sketches (default 0)\n"
          "      --exact             full SVD of every matrix (slow; validation)\n"
          "      --include REGEX     factor only tensors matching (POSIX ERE)\n"
          "      --exclude REGEX     do not factor tensors matching\n"
          "      --max-memory SIZE   bound on working memory (default 1G)\n"
          "  -j, --threads N         threads (default: online CPUs)\n"
          "  -q, --quiet             no progress on stderr\n"
          "  -h, --help              this help\n",
          f);
}

enum { OPT_RESTART = 256, OPT_PART };

/* One rank K: the factors hold, and certify, every rank up to it. */
static lx_status parse_rank(const char *s, lx_factor_opts *o)
{
    if (strchr(s, ','))
        return lx_fail(LX_EUSAGE, "factor: --rank '%s': expected one rank K, the largest a "
                       "later run uses (the factors certify every rank up to K)", s);
    uint64_t r;
    lx_status st = lx_parse_u64(s, "--rank", 1, 100000, &r);
    if (st == LX_OK)
        o->rank = (int)r;
    return st;
}

int cmd_factor(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'}, {"rank", required_argument, 0, 'k'},
        CLI_STREAM_LONGOPTS,
        {"restart", no_argument, 0, OPT_RESTART}, {"part", required_argument, 0, OPT_PART},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    lx_factor_opts o;
    lx_factor_opts_default(&o);
    o.stream.report = cli_reporter();
    cli_stream cs = {.e = &o.stream};
    int c;
    lx_status st = LX_OK;
    optind = 1;
    opterr = 0;
    while (st == LX_OK && (c = getopt_long(argc, argv, ":b:a:o:k:j:qh", longopts, NULL)) != -1) {
        if (cli_stream_option(&cs, c, optarg, &st))
            continue;
        switch (c) {
        case 'o': o.output_path = optarg; break;
        case 'k': st = parse_rank(optarg, &o); break;
        case OPT_RESTART: o.restart = 1; break;
        case OPT_PART: st = cli_parse_part("factor", optarg, &o.part, &o.nparts); break;
        case 'q': o.stream.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: st = cli_bad_option("factor", c, argv); break;
        }
    }
    if (st == LX_OK)
        st = cli_stream_finish(&cs, "factor", argc, argv, &o.output_path);
    if (st == LX_OK)
        st = cli_restart_part("factor", o.restart, o.part, o.nparts);
    if (st != LX_OK)
        return cli_report(st);
    signal(SIGXFSZ, SIG_IGN);
    cli_on_interrupt("interrupted: rerun the same command to resume");
    return cli_report(lx_factor_run(&o));
}
