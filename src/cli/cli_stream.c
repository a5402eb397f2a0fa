/* cli_stream.c - the options apply, lora and analyze share (see cli.h). */
#include <ctype.h>
#include <getopt.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "loxstream/factor.h"
#include "loxstream/parse.h"

int cli_stream_option(cli_stream *s, int c, const char *arg, lx_status *st)
{
    uint64_t v;
    if (c >= CLI_OPT_TOL && c <= CLI_OPT_EXACT)
        s->have_svd = 1;
    switch (c) {
    case 'b':
        s->e->base_path = arg;
        return 1;
    case 'a':
        s->e->aligned_path = arg;
        return 1;
    case CLI_OPT_TOL:
        *st = lx_parse_double(arg, "--tol", 1e-12, 1, &s->e->svd.tol);
        s->have_tol = 1;
        return 1;
    case CLI_OPT_POWER:
        if ((*st = lx_parse_u64(arg, "--power-iters", 0, 100, &v)) == LX_OK)
            s->e->svd.passes = (int)v + 1;
        s->have_power = 1;
        return 1;
    case CLI_OPT_MAXPASS:
        if ((*st = lx_parse_u64(arg, "--max-passes", 2, 1000, &v)) == LX_OK)
            s->e->svd.max_passes = (int)v;
        return 1;
    case CLI_OPT_OVERSAMPLE:
        if ((*st = lx_parse_u64(arg, "--oversample", 0, 1000, &v)) == LX_OK)
            s->e->svd.oversample = (int)v;
        return 1;
    case CLI_OPT_SEED:
        *st = lx_parse_u64(arg, "--seed", 0, UINT64_MAX, &s->e->svd.seed);
        return 1;
    case CLI_OPT_EXACT:
        s->e->svd.exact = 1;
        return 1;
    case CLI_OPT_INCLUDE:
        s->e->include = arg;
        return 1;
    case CLI_OPT_EXCLUDE:
        s->e->exclude = arg;
        return 1;
    case CLI_OPT_MAXMEM:
        *st = lx_parse_size(arg, "--max-memory", &s->e->max_memory);
        return 1;
    case CLI_OPT_REVISION:
        s->revision = arg;
        return 1;
    case 'j':
        if ((*st = lx_parse_u64(arg, "--threads", 1, 1024, &v)) == LX_OK)
            s->e->threads = (int)v;
        return 1;
    default:
        return 0;
    }
}

lx_status cli_stream_finish(const cli_stream *s, const char *cmd, int argc, char **argv,
                            const char *const *output)
{
    if (optind < argc)
        return lx_fail(LX_EUSAGE, "%s: unexpected argument '%s'", cmd, argv[optind]);
    if ((!s->e->base_path && !s->base_optional) || !s->e->aligned_path || (output && !*output))
        return lx_fail(LX_EUSAGE, "%s: %s are required (see loxstream %s --help)", cmd,
                       output ? "--base, --aligned and --output" : "--base and --aligned", cmd);
    if (output && !**output)
        return lx_fail(LX_EUSAGE, "%s: --output: the path is empty", cmd);
    if (s->have_tol && s->have_power)
        return lx_fail(LX_EUSAGE, "%s: --tol and --power-iters exclude each other", cmd);
    if (s->e->svd.exact && (s->have_tol || s->have_power))
        return lx_fail(LX_EUSAGE, "%s: --exact computes a full SVD: --tol and --power-iters do "
                       "not apply", cmd);
    /* the other usage errors before the inputs are looked at */
    lx_filter f;
    lx_status st = lx_filter_init(&f, s->e->include, s->e->exclude);
    if (st != LX_OK)
        return st;
    lx_filter_free(&f);
    lx_engine_opts *e = s->e;
    st = e->base_path ? cli_input("--base", e->base_path, s->revision, e->quiet, &e->base_path,
                                  &e->base_model)
                      : LX_OK;
    if (st == LX_OK)
        st = cli_input("--aligned", e->aligned_path, s->revision, e->quiet, &e->aligned_path,
                       &e->aligned_model);
    for (size_t i = 0; st == LX_OK && s->finetuned && i < *s->nfinetuned; i++)
        st = cli_input("--finetuned", s->finetuned[i], s->revision, e->quiet, &s->finetuned[i],
                       NULL);
    if (st == LX_OK)
        st = cli_revision_used(s->revision, cmd);
    if (st != LX_OK)
        return st;
#ifdef _OPENMP
    omp_set_num_threads(s->e->threads);
#endif
    return LX_OK;
}

lx_status cli_bad_option(const char *cmd, int c, char **argv)
{
    if (c == ':')
        return lx_fail(LX_EUSAGE, "%s: option '%s' needs a value", cmd, argv[optind - 1]);
    return lx_fail(LX_EUSAGE, "%s: unknown option '%s' (see loxstream %s --help)", cmd,
                   argv[optind - 1], cmd);
}

lx_status cli_stream_factors(cli_stream *s, const char *cmd, const char *path, int *rank)
{
    if (s->have_svd)
        return lx_fail(LX_EUSAGE, "%s: --factors %s: the factors were computed with their own "
                       "SVD options (--tol, --power-iters, --max-passes, --oversample, --seed, "
                       "--exact): give none of them", cmd, path);
    lx_rsvd_opts svd = s->e->svd;
    lx_status st = lx_factor_store_open(path, &s->e->factors, rank, &svd);
    if (st == LX_OK)
        s->e->svd = svd;
    return st;
}

/* "I/N", decimal, 1 <= I <= N <= LX_MAX_PARTS. */
lx_status cli_parse_part(const char *cmd, const char *s, unsigned *part, unsigned *nparts)
{
    unsigned long v[2];
    const char *p = s;
    for (int k = 0; k < 2; k++) {
        if (!isdigit((unsigned char)*p))
            goto bad;
        v[k] = 0;
        for (; isdigit((unsigned char)*p); p++)
            if ((v[k] = v[k] * 10 + (unsigned long)(*p - '0')) > LX_MAX_PARTS)
                goto bad;
        if (*p != (k ? '\0' : '/'))
            goto bad;
        p++;
    }
    if (v[0] < 1 || v[0] > v[1])
        goto bad;
    *part = (unsigned)v[0];
    *nparts = (unsigned)v[1];
    return LX_OK;
bad:
    return lx_fail(LX_EUSAGE, "%s: --part '%s': expected I/N, part I of N, with "
                   "1 <= I <= N <= %d (e.g. --part 2/4)", cmd, s, LX_MAX_PARTS);
}

lx_status cli_restart_part(const char *cmd, int restart, unsigned part, unsigned nparts)
{
    if (restart && nparts > 1)
        return lx_fail(LX_EUSAGE, "%s: --restart with --part %u/%u would discard the other "
                       "parts' work: run --restart without --part", cmd, part, nparts);
    return LX_OK;
}
