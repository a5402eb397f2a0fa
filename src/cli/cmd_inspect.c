/* cmd_inspect.c - loxstream inspect: list the tensors of a checkpoint, one
 * per line (TSV, or JSON lines with --json), summary on stderr. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "loxstream/checkpoint.h"
#include "loxstream/error.h"
#include "loxstream/parse.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: loxstream inspect [OPTION]... CKPT\n"
               "List the tensors of a checkpoint (a .safetensors file, or a directory with\n"
               "model.safetensors.index.json and its shards, model.safetensors, or loose\n"
               "*.safetensors files, or a model ID such as ORG/NAME in the local Hugging\n"
               "Face cache), after validating every shard and the index.\n\n"
               "One line per tensor on stdout, tab-separated: name, dtype, shape (dims joined\n"
               "by 'x', empty for a scalar), bytes, shard file.  Control characters and '\\'\n"
               "in names are escaped (\\t, \\n, \\\\, \\xNN).\n\n"
               "  --json       one JSON object per line instead:\n"
               "               {\"name\",\"dtype\",\"shape\",\"bytes\",\"shard\",\"offset\"}\n"
               "  --revision REV  ref or commit of a model ID (default main)\n"
               "  -q, --quiet  no summary on stderr\n"
               "  -h, --help   show this help\n\n"
               "Exit status: 0 success, 1 runtime error (e.g. CKPT cannot be read),\n"
               "2 usage error, 3 the checkpoint was rejected or does not exist.\n");
}

/* Shape "8x768"; "" for a scalar. */
static void put_shape(const lx_tensor *t, FILE *f)
{
    for (int i = 0; i < t->ndim; i++)
        fprintf(f, i ? "x%" PRIu64 : "%" PRIu64, t->shape[i]);
}

/* Print name escaped (see lx_st_escape_name) through the growing buffer. */
static lx_status put_escaped(const char *name, char **esc, size_t *cap)
{
    /* escaping may grow a name 4x */
    size_t need = 4 * strlen(name) + 1;
    if (need > *cap) {
        char *p = realloc(*esc, need);
        if (!p)
            return lx_fail(LX_EFAIL, "out of memory");
        *esc = p;
        *cap = need;
    }
    fputs(lx_st_escape_name(name, *esc, *cap), stdout);
    return LX_OK;
}

static lx_status put_tsv(const lx_checkpoint *ck, const lx_tensor *t, char **esc, size_t *cap)
{
    lx_status st = put_escaped(t->name, esc, cap);
    if (st != LX_OK)
        return st;
    printf("\t%s\t", lx_dtype_name(t->dtype));
    put_shape(t, stdout);
    printf("\t%" PRIu64 "\t", t->nbytes);
    /* a loose shard's name is whatever the directory holds: "a\tb.safetensors"
     * must not add a field */
    if ((st = put_escaped(ck->shards[t->shard].name, esc, cap)) != LX_OK)
        return st;
    putchar('\n');
    return LX_OK;
}

/* Tensor names are checked UTF-8 (the whole header is); a loose shard's
 * file name is whatever bytes the directory holds, which JSON cannot hold.
 * Checked before the first line, so that no partial listing is printed. */
static lx_status check_json_names(const lx_checkpoint *ck)
{
    for (size_t i = 0; i < ck->nshards; i++) {
        json_t *s = json_string(ck->shards[i].name);
        if (!s) {
            char q[LX_NAME_QUOTE];
            return lx_fail(LX_EINPUT,
                           "%s: shard file name '%s' is not valid UTF-8: JSON cannot hold it "
                           "(use the TSV output)",
                           ck->path, lx_st_escape_name(ck->shards[i].name, q, sizeof q));
        }
        json_decref(s);
    }
    return LX_OK;
}

static lx_status put_json(const lx_checkpoint *ck, const lx_tensor *t)
{
    json_t *o = json_object(), *shape = json_array();
    json_t *shard = json_string(ck->shards[t->shard].name);
    int bad = !o || !shape || !shard;
    bad = bad || json_object_set_new(o, "name", json_string(t->name));
    bad = bad || json_object_set_new(o, "dtype", json_string(lx_dtype_name(t->dtype)));
    for (int i = 0; !bad && i < t->ndim; i++)
        bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[i]));
    bad = bad || json_object_set(o, "shape", shape);
    bad = bad || json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
    bad = bad || json_object_set(o, "shard", shard);
    bad = bad || json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
    /* json_dumpf writes the members in insertion order */
    bad = bad || json_dumpf(o, stdout, JSON_COMPACT) != 0;
    json_decref(shard);
    json_decref(shape);
    json_decref(o);
    if (bad && !ferror(stdout))
        return lx_fail(LX_EFAIL, "out of memory");
    putchar('\n');
    return LX_OK;
}

/* The message for an option getopt refused.  It sets optopt for a known
 * long option given a value ("--json=1") and for an unknown short one (the
 * 'x' of "-qx"), and leaves it 0 for an unknown long one.  The text comes
 * from the command line: escaped, so that the message stays one line. */
static void bad_option(const char *arg)
{
    char q[LX_NAME_QUOTE], shortopt[3] = {'-', (char)optopt, '\0'};
    lx_st_escape_name(strncmp(arg, "--", 2) ? shortopt : arg, q, sizeof q);
    if (strncmp(arg, "--", 2) != 0 || !optopt)
        fprintf(stderr, "loxstream inspect: unknown option '%s'", q);
    else
        fprintf(stderr, "loxstream inspect: option '%.*s' takes no value",
                (int)strcspn(q, "="), q);
    fprintf(stderr, " (try 'loxstream inspect --help')\n");
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"revision", required_argument, NULL, 'r'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, quiet = 0, c;
    const char *revision = NULL, *path;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'r': revision = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case ':':
            fprintf(stderr, "loxstream inspect: option '%s' needs a value (try 'loxstream "
                    "inspect --help')\n", argv[optind - 1]);
            return LX_EUSAGE;
        default:
            bad_option(argv[optind - 1]);
            return LX_EUSAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "loxstream inspect: %s (try 'loxstream inspect --help')\n",
                argc == optind ? "missing CKPT" : "only one CKPT is expected");
        return LX_EUSAGE;
    }

    lx_checkpoint *ck;
    lx_status st = cli_input("inspect", argv[optind], revision, quiet, &path, NULL);
    if (st == LX_OK)
        st = cli_revision_used(revision, "inspect");
    if (st == LX_OK)
        st = lx_checkpoint_open(path, &ck);
    if (st != LX_OK)
        return cli_report(st);
    if (json && (st = check_json_names(ck)) != LX_OK) {
        lx_checkpoint_close(ck);
        return cli_report(st);
    }

    /* a large buffer: one write per many lines */
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *esc = NULL;
    size_t cap = 0;
    int werr = 0;
    for (size_t i = 0; st == LX_OK && i < ck->ntensors; i++) {
        st = json ? put_json(ck, &ck->tensors[i]) : put_tsv(ck, &ck->tensors[i], &esc, &cap);
        if (ferror(stdout)) {
            werr = errno ? errno : EIO;
            break;
        }
    }
    free(esc);
    if (!werr && (fflush(stdout) != 0 || ferror(stdout)))
        werr = errno ? errno : EIO;
    if (st == LX_OK && werr && werr != EPIPE)
        st = lx_fail_errno(LX_EFAIL, werr, "standard output: write failed");
    /* EPIPE (SIGPIPE ignored by our parent): the reader is gone, so stop quietly */
    if (st == LX_OK && !quiet && werr != EPIPE) {
        char hs[32];
        fprintf(stderr, "%zu %s, %" PRIu64 " %s, %" PRIu64 " bytes (%s), %zu %s\n", ck->ntensors,
                plural(ck->ntensors, "tensor", "tensors"), ck->total_params,
                plural(ck->total_params, "parameter", "parameters"), ck->total_bytes,
                lx_format_size(ck->total_bytes, hs, sizeof hs), ck->nshards,
                plural(ck->nshards, "shard", "shards"));
    }
    lx_checkpoint_close(ck);
    return st == LX_OK ? 0 : cli_report(st);
}
