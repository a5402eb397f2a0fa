/* cmd_synth.c - loxstream synth: write a synthetic base/aligned/finetuned
 * model triplet (see synth.h for the model). */
#include <getopt.h>
#include <stdio.h>
#include <strings.h>

#include "cli.h"
#include "loxstream/error.h"
#include "loxstream/synth.h"
#include "loxstream/parse.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: loxstream synth OUTDIR [OPTION]...\n"
            "Write a synthetic Llama-shaped model triplet, OUTDIR/base, OUTDIR/aligned and\n"
            "OUTDIR/finetuned, in the Hugging Face layout (sharded safetensors, index,\n"
            "config.json, placeholder tokenizer).  The aligned and fine-tuned deltas have a\n"
            "planted power-law low-rank part plus dense noise; the same options always give\n"
            "the same bytes.  Existing non-empty model directories are refused.\n"
            "\n"
            "  --preset NAME        tiny, small (default) or llama-7b (Llama-2-7B's shapes)\n"
            "  --hidden N           hidden size (rows/columns of the attention matrices)\n"
            "  --intermediate N     MLP width\n"
            "  --layers N           number of decoder layers\n"
            "  --vocab N            vocabulary size (embed_tokens and lm_head rows)\n"
            "  --dtype TYPE         bf16 (default), f16 or f32\n"
            "  --shard-size SIZE    most tensor bytes per shard, e.g. 512M, 2G (preset's\n"
            "                       default: 96K tiny, 16M small, 2G llama-7b)\n"
            "  --seed S             random seed (default 1)\n"
            "  --no-finetuned       write only base and aligned\n"
            "  -q, --quiet          no progress on stderr\n"
            "  -h, --help           show this help\n"
            "\n"
            "Presets: tiny = 64/172/2 layers/250 vocab; small = 512/1376/4/4000;\n"
            "llama-7b = 4096/11008/32/32000 (about 13.5 GB per model in bf16).\n");
}

enum {
    OPT_PRESET = 256, OPT_HIDDEN, OPT_INTERMEDIATE, OPT_LAYERS, OPT_VOCAB, OPT_DTYPE,
    OPT_SHARD_SIZE, OPT_SEED, OPT_NO_FINETUNED
};

static const struct option long_options[] = {
    {"preset", required_argument, NULL, OPT_PRESET},
    {"hidden", required_argument, NULL, OPT_HIDDEN},
    {"intermediate", required_argument, NULL, OPT_INTERMEDIATE},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"vocab", required_argument, NULL, OPT_VOCAB},
    {"dtype", required_argument, NULL, OPT_DTYPE},
    {"shard-size", required_argument, NULL, OPT_SHARD_SIZE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"no-finetuned", no_argument, NULL, OPT_NO_FINETUNED},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static lx_status parse_dtype(const char *s, lx_dtype *out)
{
    if (!strcasecmp(s, "bf16") || !strcasecmp(s, "bfloat16"))
        *out = LX_DT_BF16;
    else if (!strcasecmp(s, "f16") || !strcasecmp(s, "float16") || !strcasecmp(s, "fp16"))
        *out = LX_DT_F16;
    else if (!strcasecmp(s, "f32") || !strcasecmp(s, "float32") || !strcasecmp(s, "fp32"))
        *out = LX_DT_F32;
    else
        return lx_fail(LX_EUSAGE, "--dtype: '%s' is not one of bf16, f16, f32", s);
    return LX_OK;
}

/* Options given on the command line override the preset, whatever their order. */
typedef struct overrides {
    const char *preset;
    const char *hidden, *intermediate, *layers, *vocab, *dtype, *shard_size, *seed;
    int no_finetuned, quiet;
} overrides;

static lx_status apply_overrides(const overrides *ov, lx_synth_opts *o)
{
    lx_status st = lx_synth_preset(ov->preset ? ov->preset : "small", o);
    if (st != LX_OK)
        return lx_fail_ctx(st, "--preset");
    if (ov->hidden && (st = lx_parse_u64(ov->hidden, "--hidden", 1, 1u << 20, &o->hidden)))
        return st;
    if (ov->intermediate &&
        (st = lx_parse_u64(ov->intermediate, "--intermediate", 1, 1u << 22, &o->intermediate)))
        return st;
    if (ov->layers && (st = lx_parse_u64(ov->layers, "--layers", 1, 4096, &o->layers)))
        return st;
    if (ov->vocab && (st = lx_parse_u64(ov->vocab, "--vocab", 1, 1u << 24, &o->vocab)))
        return st;
    if (ov->dtype && (st = parse_dtype(ov->dtype, &o->dtype)))
        return st;
    if (ov->shard_size) {
        if ((st = lx_parse_size(ov->shard_size, "--shard-size", &o->shard_size)))
            return st;
        if (o->shard_size == 0)
            return lx_fail(LX_EUSAGE, "--shard-size: must be at least 1 byte");
    }
    if (ov->seed && (st = lx_parse_u64(ov->seed, "--seed", 0, UINT64_MAX, &o->seed)))
        return st;
    if (ov->no_finetuned)
        o->with_finetuned = 0;
    o->quiet = ov->quiet;
    return LX_OK;
}

int cmd_synth(int argc, char **argv)
{
    overrides ov = {0};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":qh", long_options, NULL)) != -1) {
        switch (c) {
        case OPT_PRESET: ov.preset = optarg; break;
        case OPT_HIDDEN: ov.hidden = optarg; break;
        case OPT_INTERMEDIATE: ov.intermediate = optarg; break;
        case OPT_LAYERS: ov.layers = optarg; break;
        case OPT_VOCAB: ov.vocab = optarg; break;
        case OPT_DTYPE: ov.dtype = optarg; break;
        case OPT_SHARD_SIZE: ov.shard_size = optarg; break;
        case OPT_SEED: ov.seed = optarg; break;
        case OPT_NO_FINETUNED: ov.no_finetuned = 1; break;
        case 'q': ov.quiet = 1; break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return cli_report(lx_fail(LX_EUSAGE, "synth: option '%s' needs a value (try 'loxstream synth --help')",
                                      argv[optind - 1]));
        default:
            if (optopt > 0 && optopt < 256)
                return cli_report(lx_fail(LX_EUSAGE, "synth: unknown option '-%c' (try 'loxstream synth --help')",
                                          optopt));
            return cli_report(lx_fail(LX_EUSAGE, "synth: unknown option '%s' (try 'loxstream synth --help')",
                                      argv[optind - 1]));
        }
    }
    if (optind == argc)
        return cli_report(lx_fail(LX_EUSAGE, "synth: missing OUTDIR (try 'loxstream synth --help')"));
    if (optind != argc - 1)
        return cli_report(lx_fail(LX_EUSAGE, "synth: one OUTDIR expected, got %d arguments ('%s', '%s'...)",
                                  argc - optind, argv[optind], argv[optind + 1]));
    lx_synth_opts o;
    lx_status st = apply_overrides(&ov, &o);
    o.report = cli_reporter();
    if (st == LX_OK)
        st = lx_synth_write(argv[optind], &o);
    return cli_report(st);
}
