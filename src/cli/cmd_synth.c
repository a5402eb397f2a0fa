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
            "Write a synthetic Llama- or Mixtral-shaped model triplet, OUTDIR/base,\n"
            "OUTDIR/aligned and OUTDIR/finetuned, in the Hugging Face layout (sharded\n"
            "safetensors, index, config.json, placeholder tokenizer).  The aligned and\n"
            "fine-tuned deltas have a planted power-law low-rank part plus dense noise;\n"
            "the same options always give the same bytes.  Existing non-empty model\n"
            "directories are refused.\n"
            "\n"
            "  --preset NAME        tiny, small (default), llama-7b, llama3-70b or mixtral\n"
            "  --hidden N           hidden size (rows/columns of the attention matrices)\n"
            "  --intermediate N     MLP (or each expert's) width\n"
            "  --layers N           number of decoder layers\n"
            "  --vocab N            vocabulary size (embed_tokens and lm_head rows)\n"
            "  --heads N            attention heads (a divisor of the hidden size)\n"
            "  --kv-heads N         key/value heads (a divisor of the heads): k_proj and\n"
            "                       v_proj have N x hidden/heads rows\n"
            "  --experts N          experts per layer, Mixtral's layout (0: a dense MLP)\n"
            "  --fused-experts      each layer's experts as two 3-D tensors,\n"
            "                       mlp.experts.gate_up_proj and mlp.experts.down_proj\n"
            "  --dtype TYPE         bf16 (default), f16 or f32\n"
            "  --shard-size SIZE    most tensor bytes per shard, e.g. 512M, 2G (preset's\n"
            "                       default: 96K tiny, 16M small, 2G llama-7b, 5G\n"
            "                       llama3-70b and mixtral)\n"
            "  --seed S             random seed (default 1)\n"
            "  --no-finetuned       write only base and aligned\n"
            "  -q, --quiet          no progress on stderr\n"
            "  -h, --help           show this help\n"
            "\n"
            "Presets (hidden/intermediate/layers/vocab): tiny = 64/172/2/250;\n"
            "small = 512/1376/4/4000; llama-7b = 4096/11008/32/32000 (Llama-2-7B, about\n"
            "13.5 GB per model in bf16); llama3-70b = 8192/28672/80/128256, 64 heads, 8\n"
            "key/value heads (Llama-3-70B, 141 GB); mixtral = 4096/14336/32/32000, 32 heads,\n"
            "8 key/value heads, 8 experts (Mixtral-8x7B, 93 GB).  Other sizes override.\n");
}

enum {
    OPT_PRESET = 256, OPT_HIDDEN, OPT_INTERMEDIATE, OPT_LAYERS, OPT_VOCAB, OPT_DTYPE,
    OPT_SHARD_SIZE, OPT_SEED, OPT_NO_FINETUNED, OPT_HEADS, OPT_KV_HEADS, OPT_EXPERTS,
    OPT_FUSED_EXPERTS
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
    {"heads", required_argument, NULL, OPT_HEADS},
    {"kv-heads", required_argument, NULL, OPT_KV_HEADS},
    {"experts", required_argument, NULL, OPT_EXPERTS},
    {"fused-experts", no_argument, NULL, OPT_FUSED_EXPERTS},
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
    const char *heads, *kv_heads, *experts;
    int no_finetuned, fused_experts, quiet;
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
    if (ov->heads && (st = lx_parse_u64(ov->heads, "--heads", 1, 1u << 20, &o->heads)))
        return st;
    if (ov->kv_heads && (st = lx_parse_u64(ov->kv_heads, "--kv-heads", 1, 1u << 20, &o->kv_heads)))
        return st;
    if (ov->experts && (st = lx_parse_u64(ov->experts, "--experts", 0, 256, &o->experts)))
        return st;
    if (ov->fused_experts)
        o->fused_experts = 1;
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
        case OPT_HEADS: ov.heads = optarg; break;
        case OPT_KV_HEADS: ov.kv_heads = optarg; break;
        case OPT_EXPERTS: ov.experts = optarg; break;
        case OPT_FUSED_EXPERTS: ov.fused_experts = 1; break;
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
