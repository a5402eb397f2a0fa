/* cmd_apply.c - loxstream apply: options -> lx_apply_run. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "loxstream/apply.h"
#include "loxstream/factor.h"
#include "loxstream/parse.h"

static void usage(FILE *f)
{
    fputs("Usage: loxstream apply --base DIR --aligned DIR --output DIR [OPTION]...\n"
          "Write aligned + alpha * (top-k singular part of aligned - base) for every\n"
          "matrix (LoX), streaming the checkpoints in bounded memory.\n\n"
          "  -b, --base CKPT         base (pre-alignment) checkpoint: directory or .safetensors\n"
          "  -a, --aligned CKPT      aligned checkpoint (its layout is kept)\n"
          "      --revision REV      ref or commit of CKPTs given as Hugging Face model IDs\n"
          "                          (ORG/NAME, found in the local cache; default main)\n"
          "  -o, --output DIR        output directory: new or empty, or an earlier run's\n"
          "                          output with the same options and inputs (resumed)\n"
          "      --restart           discard the earlier run's output in DIR and start over\n"
          "      --part I/N          compute only part I of N (1 <= I <= N <= 9999), so that\n"
          "                          N processes (GNU parallel, a Slurm job array, other\n"
          "                          machines sharing DIR) split the run; the last part to\n"
          "                          finish completes the output\n"
          "  -k, --rank K[,K...]     rank of the safety subspace (default 6); 0: full rank\n"
          "      --alpha A[,A...]    extrapolation coefficient (default 1.25)\n"
          "                          several values: one output per (alpha, rank) from one\n"
          "                          factorisation per matrix; --output needs %a and/or %k\n"
          "                          (replaced by each value as typed)\n"
          "      --anchor M          base or aligned (default): W_out = W_M + alpha * U S V^T\n"
          "      --factor-rank K     factor at rank K (default: the largest --rank) and keep\n"
          "                          the top --rank of it\n"
          "      --factors F         the factors of a loxstream factor run (DIR F) instead\n"
          "                          of computing them: the same output as the direct run\n"
          "                          with --factor-rank K (K: F's rank); --rank <= K;\n"
          "                          --base may be left out unless --anchor base\n"
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
          "      --copy-tokenizer    copy the aligned model's tokenizer files (the default)\n"
          "      --no-copy-tokenizer do not copy them\n"
          "      --out-shard-size SIZE  re-shard the output into shards of at most SIZE\n"
          "                          bytes (model-0000i-of-0000N.safetensors and an index;\n"
          "                          default: the aligned model's shards)\n"
          "      --max-memory SIZE   bound on working memory (default 1G)\n"
          "  -j, --threads N         threads (default: online CPUs)\n"
          "      --report FILE       per-matrix TSV report (- for stdout)\n"
          "  -q, --quiet             no progress on stderr\n"
          "      --stats             print time, I/O, GFLOP/s and peak memory at the end\n"
          "  -h, --help              this help\n",
          f);
}

enum { OPT_ALPHA = 256, OPT_COPY, OPT_REPORT, OPT_STATS, OPT_RESTART, OPT_PART, OPT_ANCHOR,
       OPT_FRANK, OPT_TOKENIZER, OPT_NO_TOKENIZER, OPT_SHARD_SIZE, OPT_FACTORS };

/* "1,1.25,2" into o's alpha list (rank: 0) with each value as typed. */
static lx_status parse_list(const char *s, int rank, lx_apply_opts *o)
{
    const char *opt = rank ? "--rank" : "--alpha";
    size_t *n = rank ? &o->nrank : &o->nalpha;
    *n = 0;
    for (const char *p = s;; p++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (*n == LX_SWEEP_MAX)
            return lx_fail(LX_EUSAGE, "apply: %s '%s': more than %d values", opt, s,
                           LX_SWEEP_MAX);
        if (len == 0 || len >= LX_SWEEP_TEXT)
            return lx_fail(LX_EUSAGE, "apply: %s '%s': expected a comma-separated list of "
                           "values", opt, s);
        char *t = rank ? o->rank_text[*n] : o->alpha_text[*n];
        memcpy(t, p, len);
        t[len] = '\0';
        uint64_t v;
        lx_status st = rank ? lx_parse_u64(t, "--rank", 0, 100000, &v)
                            : lx_parse_double(t, "--alpha", -1e6, 1e6, &o->alphas[*n]);
        if (st != LX_OK)
            return st;
        if (rank)
            o->ranks[*n] = (int)v;
        (*n)++;
        if (!e)
            break;
        p = e;
    }
    if (rank)
        o->rank = o->ranks[0];
    else
        o->alpha = o->alphas[0];
    return LX_OK;
}

/* --factors F: its store and SVD options; the factor rank is F's rank K
 * (the rank, unless --rank was given), every rank at most K. */
static lx_status use_factors(cli_stream *cs, const char *path, int have_rank, lx_apply_opts *o)
{
    int k = 0;
    lx_status st = cli_stream_factors(cs, "apply", path, &k);
    if (st != LX_OK)
        return st;
    if (o->factor_rank && o->factor_rank != k)
        return lx_fail(LX_EUSAGE, "apply: --factor-rank %d: the factors in %s have rank %d (the "
                       "factor rank of a run from them)", o->factor_rank, path, k);
    if (!have_rank)
        o->rank = k;
    size_t n = o->nrank ? o->nrank : 1;
    for (size_t i = 0; i < n; i++) {
        int r = o->nrank ? o->ranks[i] : o->rank;
        if (r > k)
            return lx_fail(LX_EINPUT, "apply: --rank %d exceeds the rank of the factors in %s "
                           "(%d): run loxstream factor with --rank %d or more", r, path, k, r);
    }
    o->factor_rank = k;
    return LX_OK;
}

/* --out-shard-size: lx_parse_size, but mergekit's "5B" (10^9 bytes there,
 * 5 bytes here) is refused as ambiguous. */
static lx_status parse_shard_size(const char *s, uint64_t *out)
{
    size_t len = strlen(s), digits = strspn(s, "0123456789.");
    if (len >= 2 && digits == len - 1 && (s[len - 1] == 'B' || s[len - 1] == 'b'))
        return lx_fail(LX_EUSAGE, "apply: --out-shard-size '%s': ambiguous (mergekit reads B "
                       "as 10^9 bytes, loxstream as bytes): write %.*sG for GiB, or the number "
                       "of bytes", s, (int)(len - 1), s);
    lx_status st = lx_parse_size(s, "--out-shard-size", out);
    if (st == LX_OK && *out == 0)
        st = lx_fail(LX_EUSAGE, "apply: --out-shard-size '%s': must be more than 0", s);
    return st;
}

int cmd_apply(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},      {"rank", required_argument, 0, 'k'},
        {"alpha", required_argument, 0, OPT_ALPHA}, CLI_STREAM_LONGOPTS,
        {"copy-unmatched", no_argument, 0, OPT_COPY},
        {"report", required_argument, 0, OPT_REPORT},
        {"stats", no_argument, 0, OPT_STATS},     {"restart", no_argument, 0, OPT_RESTART},
        {"part", required_argument, 0, OPT_PART},
        {"anchor", required_argument, 0, OPT_ANCHOR},
        {"factor-rank", required_argument, 0, OPT_FRANK},
        {"factors", required_argument, 0, OPT_FACTORS},
        {"copy-tokenizer", no_argument, 0, OPT_TOKENIZER},
        {"no-copy-tokenizer", no_argument, 0, OPT_NO_TOKENIZER},
        {"out-shard-size", required_argument, 0, OPT_SHARD_SIZE},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    lx_apply_opts o;
    lx_apply_opts_default(&o);
    o.stream.report = cli_reporter();
    cli_stream cs = {.e = &o.stream};
    uint64_t v;
    int c;
    lx_status st = LX_OK;
    const char *factors = NULL;
    int have_rank = 0;
    optind = 1;
    opterr = 0;
    while (st == LX_OK && (c = getopt_long(argc, argv, ":b:a:o:k:j:qh", longopts, NULL)) != -1) {
        if (cli_stream_option(&cs, c, optarg, &st))
            continue;
        switch (c) {
        case 'o': o.output_path = optarg; break;
        case 'k':
            st = parse_list(optarg, 1, &o);
            have_rank = 1;
            break;
        case OPT_FACTORS: factors = optarg; break;
        case OPT_ALPHA: st = parse_list(optarg, 0, &o); break;
        case OPT_ANCHOR:
            if (!strcmp(optarg, "base") || !strcmp(optarg, "aligned"))
                o.anchor_base = !strcmp(optarg, "base");
            else
                st = lx_fail(LX_EUSAGE, "apply: --anchor '%s': expected base or aligned", optarg);
            break;
        case OPT_FRANK:
            if ((st = lx_parse_u64(optarg, "--factor-rank", 1, 100000, &v)) == LX_OK)
                o.factor_rank = (int)v;
            break;
        case OPT_COPY: o.copy_unmatched = 1; break;
        case OPT_TOKENIZER: o.no_copy_tokenizer = 0; break;
        case OPT_NO_TOKENIZER: o.no_copy_tokenizer = 1; break;
        case OPT_SHARD_SIZE:
            st = parse_shard_size(optarg, &o.out_shard_size);
            break;
        case OPT_REPORT: o.report_path = optarg; break;
        case OPT_STATS: o.stats = 1; break;
        case OPT_RESTART: o.restart = 1; break;
        case OPT_PART: st = cli_parse_part("apply", optarg, &o.part, &o.nparts); break;
        case 'q': o.stream.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: st = cli_bad_option("apply", c, argv); break;
        }
    }
    /* the factors hold what base would give, unless base is the anchor */
    cs.base_optional = factors && !o.anchor_base;
    if (st == LX_OK && factors && o.anchor_base && !o.stream.base_path)
        st = lx_fail(LX_EUSAGE, "apply: --anchor base needs --base (the factors hold dW's "
                     "factors, not the base weights)");
    if (st == LX_OK)
        st = cli_stream_finish(&cs, "apply", argc, argv, &o.output_path);
    if (st == LX_OK)
        st = cli_restart_part("apply", o.restart, o.part, o.nparts);
    if (st == LX_OK && factors)
        st = use_factors(&cs, factors, have_rank, &o);
    if (st != LX_OK) {
        lx_factor_store_close(o.stream.factors);
        return cli_report(st);
    }
    /* Past a file-size limit (ulimit -f) a write must fail with EFBIG, which
     * leaves a resumable output, rather than kill the process. */
    signal(SIGXFSZ, SIG_IGN);
    cli_on_interrupt("interrupted: rerun the same command to resume");
    st = lx_apply_run(&o);
    lx_factor_store_close(o.stream.factors);
    return cli_report(st);
}
