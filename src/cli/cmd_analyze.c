/* cmd_analyze.c - loxstream analyze: options -> lx_analyze_run. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "loxstream/analyze.h"
#include "loxstream/factor.h"
#include "loxstream/parse.h"

static void usage(FILE *f)
{
    fputs("Usage: loxstream analyze --base CKPT --aligned CKPT [--finetuned CKPT]... [OPTION]...\n"
          "Per matrix of dW = aligned - base: the top singular values, the energy captured\n"
          "by the top r, R_align = ||U_k U_k^T dW||/||dW||, and with a fine-tuned model\n"
          "R_ft = ||U_k U_k^T (W_ft - W_base)||/||W_ft - W_base|| and R_ft/R_align.\n"
          "One TSV line per matrix on stdout; the means over linear layers on stderr.\n\n"
          "  -b, --base CKPT         base (pre-alignment) checkpoint\n"
          "  -a, --aligned CKPT      aligned checkpoint\n"
          "  -f, --finetuned CKPT    fine-tuned checkpoint (for R_ft); several times: one\n"
          "                          R_ft per model, columns suffixed _1, _2, ... in order\n"
          "      --revision REV      ref or commit of CKPTs given as Hugging Face model IDs\n"
          "                          (ORG/NAME, found in the local cache; default main)\n"
          "  -k, --rank K            k of R_align and R_ft (default 6)\n"
          "      --ranks LIST        ranks of the energy columns (default 1,2,3,4,6,8)\n"
          "      --tol T             accuracy target of the SVD (default 3e-4)\n"
          "      --power-iters Q     instead of --tol: exactly Q power iterations\n"
          "      --max-passes N      cap of passes with --tol (default 12)\n"
          "      --oversample P      extra sketch columns (default 10)\n"
          "      --seed S            seed of the random sketches (default 0)\n"
          "      --exact             full SVD of every matrix (slow; validation)\n"
          "      --include REGEX     analyse only tensors matching (POSIX ERE)\n"
          "      --exclude REGEX     do not analyse tensors matching\n"
          "      --embedding REGEX   embedding tables, left out of the means\n"
          "                          (default: embed_tokens, wte, word_embeddings, embed_in)\n"
          "      --json              JSON Lines on stdout: one object per matrix, then the\n"
          "                          summary {\"tensor\": \"*\", ...} with the means\n"
          "      --top N             singular values listed (default 16 with --json or\n"
          "                          --plot, else all computed); factors at rank >= N\n"
          "      --means FILE        means overall, per module type and per layer (TSV)\n"
          "      --plot FILE         SVG chart: singular-value decay, energy of the top r\n"
          "      --factor-rank K     factor at rank K (>= the ranks above), certifying\n"
          "                          every rank up to K, as loxstream factor does\n"
          "      --factors F         the factors of a loxstream factor run instead of\n"
          "                          computing them: as --factor-rank K (F's rank)\n"
          "      --max-memory SIZE   bound on working memory (default 1G)\n"
          "  -j, --threads N         threads (default: online CPUs)\n"
          "  -q, --quiet             no progress or means on stderr\n"
          "  -h, --help              this help\n",
          f);
}

enum { OPT_RANKS = 256, OPT_EMBED, OPT_JSON, OPT_TOP, OPT_MEANS, OPT_PLOT, OPT_FRANK,
       OPT_FACTORS };

/* --plot and --means name a file: standard output has the per-matrix lines. */
static lx_status file_option(const char *opt, const char *arg, const char **dst)
{
    if (!strcmp(arg, "-"))
        return lx_fail(LX_EUSAGE, "%s: '-' would mix into the per-matrix lines on standard "
                       "output: name a file", opt);
    *dst = arg;
    return LX_OK;
}

int cmd_analyze(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"finetuned", required_argument, 0, 'f'},  {"rank", required_argument, 0, 'k'},
        {"ranks", required_argument, 0, OPT_RANKS}, CLI_STREAM_LONGOPTS,
        {"embedding", required_argument, 0, OPT_EMBED},
        {"json", no_argument, 0, OPT_JSON},        {"top", required_argument, 0, OPT_TOP},
        {"means", required_argument, 0, OPT_MEANS}, {"plot", required_argument, 0, OPT_PLOT},
        {"factor-rank", required_argument, 0, OPT_FRANK},
        {"factors", required_argument, 0, OPT_FACTORS},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    lx_analyze_opts o;
    lx_analyze_opts_default(&o);
    o.stream.report = cli_reporter();
    cli_stream cs = {.e = &o.stream, .finetuned = o.finetuned, .nfinetuned = &o.nfinetuned};
    uint64_t v;
    const char *factors = NULL;
    int c;
    lx_status st = LX_OK;
    optind = 1;
    opterr = 0;
    while (st == LX_OK && (c = getopt_long(argc, argv, ":b:a:f:k:j:qh", longopts, NULL)) != -1) {
        if (cli_stream_option(&cs, c, optarg, &st))
            continue;
        switch (c) {
        case 'f':
            if (o.nfinetuned == LX_ANALYZE_MAX_FT)
                st = lx_fail(LX_EUSAGE, "--finetuned: at most %d models", LX_ANALYZE_MAX_FT);
            else
                o.finetuned[o.nfinetuned++] = optarg;
            break;
        case 'k':
            if ((st = lx_parse_u64(optarg, "--rank", 1, 100000, &v)) == LX_OK)
                o.rank = (int)v;
            break;
        case OPT_RANKS: st = lx_analyze_parse_ranks(optarg, &o); break;
        case OPT_EMBED: o.embedding = optarg; break;
        case OPT_JSON: o.json = 1; break;
        case OPT_TOP:
            if ((st = lx_parse_u64(optarg, "--top", 1, 1024, &v)) == LX_OK)
                o.top = (int)v;
            break;
        case OPT_MEANS: st = file_option("--means", optarg, &o.means_path); break;
        case OPT_PLOT: st = file_option("--plot", optarg, &o.plot_path); break;
        case OPT_FRANK:
            if ((st = lx_parse_u64(optarg, "--factor-rank", 1, 100000, &v)) == LX_OK)
                o.factor_rank = (int)v;
            break;
        case OPT_FACTORS: factors = optarg; break;
        case 'q': o.stream.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: st = cli_bad_option("analyze", c, argv); break;
        }
    }
    if (st == LX_OK)
        st = cli_stream_finish(&cs, "analyze", argc, argv, NULL);
    int k = 0;
    if (st == LX_OK && factors && (st = cli_stream_factors(&cs, "analyze", factors, &k)) == LX_OK &&
        o.factor_rank && o.factor_rank != k)
        st = lx_fail(LX_EUSAGE, "analyze: --factor-rank %d: the factors in %s have rank %d",
                     o.factor_rank, factors, k);
    if (factors)
        o.factor_rank = k;
    o.stream.certify_all = o.factor_rank > 0;
    if (st == LX_OK) {
        cli_on_interrupt("interrupted");
        st = lx_analyze_run(&o, stdout);
    }
    lx_factor_store_close(o.stream.factors);
    return cli_report(st);
}
