/* cmd_lora.c - loxstream lora: options -> lx_lora_run. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "loxstream/factor.h"
#include "loxstream/lora.h"
#include "loxstream/parse.h"

static void usage(FILE *f)
{
    fputs("Usage: loxstream lora --base CKPT --aligned CKPT --output DIR [OPTION]...\n"
          "Write the LoX update of every 2-D '.weight' matrix as a PEFT LoRA adapter\n"
          "(DIR/adapter_model.safetensors, DIR/adapter_config.json and the card\n"
          "DIR/README.md): merged onto the aligned model it gives what loxstream apply\n"
          "writes, up to rounding.\n\n"
          "  -b, --base CKPT         base (pre-alignment) checkpoint: directory or .safetensors\n"
          "  -a, --aligned CKPT      aligned checkpoint (the model the adapter is for)\n"
          "      --revision REV      ref or commit of CKPTs given as Hugging Face model IDs\n"
          "                          (ORG/NAME, found in the local cache; default main)\n"
          "  -o, --output DIR        output directory: new or empty\n"
          "  -k, --rank K            adapter rank r, the same for every module (default 6;\n"
          "                          at least 1)\n"
          "      --alpha A           extrapolation coefficient (default 1.25); not folded\n"
          "                          into the factors: lora_alpha = A * r\n"
          "      --factors F         the factors of a loxstream factor run (DIR F) instead\n"
          "                          of computing them (--rank: default and at most F's)\n"
          "      --tol T             accuracy target: passes go on until the estimated\n"
          "                          relative error of the rank-k result is <= T\n"
          "                          (default 3e-4)\n"
          "      --power-iters Q     instead of --tol: exactly Q power iterations (Q+1 passes)\n"
          "      --max-passes N      cap of passes with --tol (default 12)\n"
          "      --oversample P      extra sketch columns (default 10)\n"
          "      --seed S            seed of the random sketches (default 0)\n"
          "      --exact             full SVD of every matrix (slow; validation)\n"
          "      --include REGEX     export only tensors matching (POSIX ERE)\n"
          "      --exclude REGEX     do not export tensors matching\n"
          "      --embedding REGEX   tensors stored as lora_embedding_A/B (default:\n"
          "                          '" LX_LORA_EMBEDDING_DEFAULT "')\n"
          "      --dtype TYPE        bf16, f16 or f32 (default: the aligned tensor's dtype\n"
          "                          if one of these, else f32)\n"
          "      --no-embeddings     linear layers only: no embedding tables or output\n"
          "                          heads (embed_tokens, wte, lm_head...), as vLLM wants\n"
          "                          for most models\n"
          "      --fan-in-fan-out    every linear weight is stored [in, out] (Conv1D);\n"
          "                          default: c_attn/q_attn/c_proj/c_fc when config.json\n"
          "                          has a Conv1D model_type:\n"
          "                          " LX_LORA_CONV1D_TYPES "\n"
          "      --no-fan-in-fan-out every linear weight is stored [out, in]\n"
          "      --base-model-name NAME  base_model_name_or_path of the adapter (default:\n"
          "                          the --aligned model ID, else its absolute path)\n"
          "      --max-memory SIZE   bound on working memory (default 1G)\n"
          "  -j, --threads N         threads (default: online CPUs)\n"
          "  -q, --quiet             no progress on stderr\n"
          "  -h, --help              this help\n",
          f);
}

enum {
    OPT_ALPHA = 256, OPT_EMBEDDING, OPT_DTYPE, OPT_NO_EMB, OPT_FIFO, OPT_NO_FIFO, OPT_BASE_NAME,
    OPT_FACTORS
};

/* "loxstream lora ARG...", each argument shell-quoted where it needs it
 * (for the card); malloc'd, NULL on OOM. */
static char *command_line(int argc, char **argv)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fputs("loxstream", f);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int plain = *a != '\0';
        for (const char *p = a; *p && plain; p++)
            plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                           "-_./=:,+@%", *p) != NULL;
        if (plain) {
            fprintf(f, " %s", a);
            continue;
        }
        fputs(" '", f);
        for (const char *p = a; *p; p++)
            if (*p == '\'')
                fputs("'\\''", f);
            else
                fputc(*p, f);
        fputc('\'', f);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int cmd_lora(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},      {"rank", required_argument, 0, 'k'},
        {"alpha", required_argument, 0, OPT_ALPHA}, CLI_STREAM_LONGOPTS,
        {"embedding", required_argument, 0, OPT_EMBEDDING},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"no-embeddings", no_argument, 0, OPT_NO_EMB},
        {"fan-in-fan-out", no_argument, 0, OPT_FIFO},
        {"no-fan-in-fan-out", no_argument, 0, OPT_NO_FIFO},
        {"base-model-name", required_argument, 0, OPT_BASE_NAME},
        {"factors", required_argument, 0, OPT_FACTORS},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    lx_lora_opts o;
    lx_lora_opts_default(&o);
    o.stream.report = cli_reporter();
    cli_stream cs = {.e = &o.stream};
    uint64_t v;
    int c;
    lx_status st = LX_OK;
    const char *factors = NULL;
    int have_rank = 0, k = 0;
    optind = 1;
    opterr = 0;
    while (st == LX_OK && (c = getopt_long(argc, argv, ":b:a:o:k:j:qh", longopts, NULL)) != -1) {
        if (cli_stream_option(&cs, c, optarg, &st))
            continue;
        switch (c) {
        case 'o': o.output_path = optarg; break;
        case 'k':
            if ((st = lx_parse_u64(optarg, "--rank", 0, 100000, &v)) == LX_OK)
                o.rank = (int)v;
            have_rank = 1;
            if (st == LX_OK && v == 0)
                st = lx_fail(LX_EUSAGE, "lora: --rank 0 (full rank) has no LoRA form; use "
                             "--rank K >= 1, or loxstream apply --rank 0");
            break;
        case OPT_ALPHA: st = lx_parse_double(optarg, "--alpha", -1e6, 1e6, &o.alpha); break;
        case OPT_EMBEDDING: o.embedding = optarg; break;
        case OPT_FACTORS: factors = optarg; break;
        case OPT_DTYPE:
            st = lx_lora_parse_dtype(optarg, &o.dtype);
            o.has_dtype = 1;
            break;
        case OPT_NO_EMB: o.no_embeddings = 1; break;
        case OPT_FIFO: o.fan_in_fan_out = LX_FIFO_ALL; break;
        case OPT_NO_FIFO: o.fan_in_fan_out = LX_FIFO_NEVER; break;
        case OPT_BASE_NAME:
            o.base_model_name = optarg;
            if (!*optarg)
                st = lx_fail(LX_EUSAGE, "lora: --base-model-name: the name is empty");
            break;
        case 'q': o.stream.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: st = cli_bad_option("lora", c, argv); break;
        }
    }
    if (st == LX_OK)
        st = cli_stream_finish(&cs, "lora", argc, argv, &o.output_path);
    if (st == LX_OK && factors && (st = cli_stream_factors(&cs, "lora", factors, &k)) == LX_OK) {
        if (!have_rank)
            o.rank = k;
        else if (o.rank > k)
            st = lx_fail(LX_EINPUT, "lora: --rank %d exceeds the rank of the factors in %s (%d): "
                         "run loxstream factor with --rank %d or more", o.rank, factors, k, o.rank);
    }
    if (st != LX_OK) {
        lx_factor_store_close(o.stream.factors);
        return cli_report(st);
    }
    /* Past a file-size limit (ulimit -f) a write must fail with EFBIG and
     * the run clean up, rather than the process be killed. */
    signal(SIGXFSZ, SIG_IGN);
    cli_on_interrupt("interrupted: the unfinished adapter file was removed; run the command again");
    char *command = command_line(argc, argv);
    o.command = command;
    st = lx_lora_run(&o);
    lx_factor_store_close(o.stream.factors);
    free(command);
    return cli_report(st);
}
