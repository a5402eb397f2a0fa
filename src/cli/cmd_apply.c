/* cmd_apply.c - loxstream apply: options -> lx_apply_run. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "loxstream/apply.h"
#include "loxstream/util.h"

static void usage(FILE *f)
{
    fputs("Usage: loxstream apply --base DIR --aligned DIR --output DIR [OPTION]...\n"
          "Write aligned + alpha * (top-k singular part of aligned - base) for every\n"
          "matrix (LoX), streaming the checkpoints in bounded memory.\n\n"
          "  -b, --base CKPT         base (pre-alignment) checkpoint: directory or .safetensors\n"
          "  -a, --aligned CKPT      aligned checkpoint (its layout is kept)\n"
          "  -o, --output DIR        output directory: new or empty, or an earlier run's\n"
          "                          output with the same options and inputs (resumed)\n"
          "      --restart           discard the earlier run's output in DIR and start over\n"
          "  -k, --rank K            rank of the safety subspace (default 6); 0: full rank\n"
          "      --alpha A           extrapolation coefficient (default 1.25)\n"
          "      --tol T             accuracy target: passes go on until the estimated\n"
          "                          relative error of the rank-k result is <= T\n"
          "                          (default 3e-4)\n"
          "      --power-iters Q     instead of --tol: exactly Q power iterations (Q+1 passes)\n"
          "      --max-passes N      cap of passes with --tol (default 12)\n"
          "      --oversample P      extra sketch columns (default 10)\n"
          "      --seed S            seed of the random sketches (default 0)\n"
          "      --exact             full SVD of every matrix (slow; validation)\n"
          "      --include REGEX     transform only tensors matching (POSIX ERE)\n"
          "      --exclude REGEX     do not transform tensors matching\n"
          "      --copy-unmatched    copy tensors missing from base or of another shape\n"
          "      --max-memory SIZE   bound on working memory (default 1G)\n"
          "  -j, --threads N         threads (default: online CPUs)\n"
          "      --report FILE       per-matrix TSV report (- for stdout)\n"
          "  -q, --quiet             no progress on stderr\n"
          "      --stats             print time, I/O, GFLOP/s and peak memory at the end\n"
          "  -h, --help              this help\n",
          f);
}

enum {
    OPT_ALPHA = 256, OPT_TOL, OPT_POWER, OPT_MAXPASS, OPT_OVERSAMPLE, OPT_SEED, OPT_EXACT,
    OPT_INCLUDE, OPT_EXCLUDE, OPT_COPY, OPT_MAXMEM, OPT_REPORT, OPT_STATS, OPT_RESTART
};

int cmd_apply(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"base", required_argument, 0, 'b'},        {"aligned", required_argument, 0, 'a'},
        {"output", required_argument, 0, 'o'},      {"rank", required_argument, 0, 'k'},
        {"alpha", required_argument, 0, OPT_ALPHA}, {"tol", required_argument, 0, OPT_TOL},
        {"power-iters", required_argument, 0, OPT_POWER},
        {"max-passes", required_argument, 0, OPT_MAXPASS},
        {"oversample", required_argument, 0, OPT_OVERSAMPLE},
        {"seed", required_argument, 0, OPT_SEED},   {"exact", no_argument, 0, OPT_EXACT},
        {"include", required_argument, 0, OPT_INCLUDE},
        {"exclude", required_argument, 0, OPT_EXCLUDE},
        {"copy-unmatched", no_argument, 0, OPT_COPY},
        {"max-memory", required_argument, 0, OPT_MAXMEM},
        {"threads", required_argument, 0, 'j'},     {"report", required_argument, 0, OPT_REPORT},
        {"stats", no_argument, 0, OPT_STATS},     {"restart", no_argument, 0, OPT_RESTART},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    lx_apply_opts o;
    lx_apply_opts_default(&o);
    uint64_t v;
    int have_tol = 0, have_power = 0, c;
    lx_status st = LX_OK;
    optind = 1;
    opterr = 0;
    while (st == LX_OK && (c = getopt_long(argc, argv, ":b:a:o:k:j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': o.base_path = optarg; break;
        case 'a': o.aligned_path = optarg; break;
        case 'o': o.output_path = optarg; break;
        case 'k':
            if ((st = lx_parse_u64(optarg, "--rank", 0, 100000, &v)) == LX_OK)
                o.rank = (int)v;
            break;
        case OPT_ALPHA: st = lx_parse_double(optarg, "--alpha", -1e6, 1e6, &o.alpha); break;
        case OPT_TOL:
            st = lx_parse_double(optarg, "--tol", 1e-12, 1, &o.svd.tol);
            have_tol = 1;
            break;
        case OPT_POWER:
            if ((st = lx_parse_u64(optarg, "--power-iters", 0, 100, &v)) == LX_OK)
                o.svd.passes = (int)v + 1;
            have_power = 1;
            break;
        case OPT_MAXPASS:
            if ((st = lx_parse_u64(optarg, "--max-passes", 2, 1000, &v)) == LX_OK)
                o.svd.max_passes = (int)v;
            break;
        case OPT_OVERSAMPLE:
            if ((st = lx_parse_u64(optarg, "--oversample", 0, 1000, &v)) == LX_OK)
                o.svd.oversample = (int)v;
            break;
        case OPT_SEED: st = lx_parse_u64(optarg, "--seed", 0, UINT64_MAX, &o.svd.seed); break;
        case OPT_EXACT: o.svd.exact = 1; break;
        case OPT_INCLUDE: o.include = optarg; break;
        case OPT_EXCLUDE: o.exclude = optarg; break;
        case OPT_COPY: o.copy_unmatched = 1; break;
        case OPT_MAXMEM: st = lx_parse_size(optarg, "--max-memory", &o.max_memory); break;
        case 'j':
            if ((st = lx_parse_u64(optarg, "--threads", 1, 1024, &v)) == LX_OK)
                o.threads = (int)v;
            break;
        case OPT_REPORT: o.report_path = optarg; break;
        case OPT_STATS: o.stats = 1; break;
        case OPT_RESTART: o.restart = 1; break;
        case 'q': o.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case ':': st = lx_fail(LX_EUSAGE, "apply: option '%s' needs a value", argv[optind - 1]); break;
        default: st = lx_fail(LX_EUSAGE, "apply: unknown option '%s' (see loxstream apply --help)", argv[optind - 1]); break;
        }
    }
    if (st == LX_OK && optind < argc)
        st = lx_fail(LX_EUSAGE, "apply: unexpected argument '%s'", argv[optind]);
    if (st == LX_OK && (!o.base_path || !o.aligned_path || !o.output_path))
        st = lx_fail(LX_EUSAGE, "apply: --base, --aligned and --output are required (see loxstream apply --help)");
    if (st == LX_OK && have_tol && have_power)
        st = lx_fail(LX_EUSAGE, "apply: --tol and --power-iters exclude each other");
    if (st == LX_OK && o.svd.exact && (have_tol || have_power))
        st = lx_fail(LX_EUSAGE, "apply: --exact computes a full SVD: --tol and --power-iters do not apply");
    if (st != LX_OK)
        return cli_report(st);
#ifdef _OPENMP
    omp_set_num_threads(o.threads);
#endif
    /* Past a file-size limit (ulimit -f) a write must fail with EFBIG, which
     * leaves a resumable output, rather than kill the process. */
    signal(SIGXFSZ, SIG_IGN);
    return cli_report(lx_apply_run(&o));
}
