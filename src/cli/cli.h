/* cli.h - the subcommands of the loxstream command, one file each
 * (cmd_<name>.c), dispatched from the table in main.c.  Each returns the
 * process exit status (an lx_status value) after printing any error. */
#ifndef LOXSTREAM_CLI_H
#define LOXSTREAM_CLI_H

#include <stdint.h>

#include "loxstream/error.h"
#include "loxstream/engine.h"
#include "loxstream/hfcache.h"
#include "loxstream/report.h"
#include "loxstream/rsvd.h"

int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_lora(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_factor(int argc, char **argv);

/* The jobs' status lines on stderr (cli_report.c). */
lx_reporter cli_reporter(void);

/* On SIGINT, SIGTERM or SIGHUP: the progress line ended, the job's
 * unfinished file removed (lx_remove_on_interrupt), "loxstream: <message>"
 * on stderr, then the process ends by the signal (cli_report.c). */
void cli_on_interrupt(const char *message);

/* Print "loxstream: <message>" on stderr for a failed status and return it. */
int cli_report(int status);

/* ---- the options of the streaming commands (apply, lora, analyze) ----
 * -b/--base, -a/--aligned, --tol, --power-iters, --max-passes, --oversample, --seed, --exact,
 * --include, --exclude, --max-memory, --revision and -j/--threads, parsed the same way
 * everywhere (cli_stream.c).  A command puts CLI_STREAM_LONGOPTS in its
 * option table, "b:a:j:" in its short options, and numbers its own long-only
 * options below CLI_OPT_TOL. */
enum {
    CLI_OPT_TOL = 1000, CLI_OPT_POWER, CLI_OPT_MAXPASS, CLI_OPT_OVERSAMPLE, CLI_OPT_SEED,
    CLI_OPT_EXACT, CLI_OPT_INCLUDE, CLI_OPT_EXCLUDE, CLI_OPT_MAXMEM, CLI_OPT_REVISION
};
#define CLI_STREAM_LONGOPTS                                                              \
    {"base", required_argument, 0, 'b'},                                                 \
    {"aligned", required_argument, 0, 'a'},                                              \
    {"tol", required_argument, 0, CLI_OPT_TOL},                                          \
    {"power-iters", required_argument, 0, CLI_OPT_POWER},                                \
    {"max-passes", required_argument, 0, CLI_OPT_MAXPASS},                               \
    {"oversample", required_argument, 0, CLI_OPT_OVERSAMPLE},                            \
    {"seed", required_argument, 0, CLI_OPT_SEED},                                        \
    {"exact", no_argument, 0, CLI_OPT_EXACT},                                            \
    {"include", required_argument, 0, CLI_OPT_INCLUDE},                                  \
    {"exclude", required_argument, 0, CLI_OPT_EXCLUDE},                                  \
    {"max-memory", required_argument, 0, CLI_OPT_MAXMEM},                                \
    {"revision", required_argument, 0, CLI_OPT_REVISION},                                \
    {"threads", required_argument, 0, 'j'}

/* Where the shared options go (the job's embedded engine options), and
 * which of --tol / --power-iters was seen; --revision; more inputs to
 * resolve with the other two (analyze's --finetuned: finetuned[0..*nfinetuned),
 * NULL: none). */
typedef struct cli_stream {
    lx_engine_opts *e;
    int have_tol, have_power;
    int have_svd;                  /* one of --tol ... --exact was given */
    const char *revision;
    int base_optional;             /* apply --factors --anchor aligned: no --base needed */
    const char **finetuned;
    const size_t *nfinetuned;
} cli_stream;

/* If c is one of the shared options, parse arg into s, set *st, return 1;
 * otherwise return 0. */
int cli_stream_option(cli_stream *s, int c, const char *arg, lx_status *st);
/* Once getopt_long is done: no operand left, --base and --aligned given
 * (and --output, when `output` is not NULL: the command's output path),
 * the checks across the shared options, the inputs resolved (cli_input);
 * then OpenMP's thread count set. */
lx_status cli_stream_finish(const cli_stream *s, const char *cmd, int argc, char **argv,
                            const char *const *output);
/* --part "I/N", decimal, 1 <= I <= N <= LX_MAX_PARTS; else LX_EUSAGE. */
lx_status cli_parse_part(const char *cmd, const char *s, unsigned *part, unsigned *nparts);
/* --restart with --part I/N, N > 1, is LX_EUSAGE. */
lx_status cli_restart_part(const char *cmd, int restart, unsigned part, unsigned nparts);
/* --factors path (apply, lora): the factor store opened into s->e->factors
 * (close it with lx_factor_store_close after the run), its SVD options in
 * s->e->svd, its rank into *rank; SVD options given as well are LX_EUSAGE. */
lx_status cli_stream_factors(cli_stream *s, const char *cmd, const char *path, int *rank);
/* The checkpoint that option names (cli_input.c): arg itself when it
 * exists, with what is not safetensors refused (sniff.h); else a model ID
 * in the Hugging Face cache at revision (NULL: main), announced on stderr
 * unless quiet.  *path: what to open; *model (if not NULL): the cache
 * entry, NULL for a local path.  A missing input is LX_EINPUT naming the
 * option ("--base: 'bsae': No such file or directory"). */
lx_status cli_input(const char *option, const char *arg, const char *revision, int quiet,
                    const char **path, const lx_hf_model **model);
/* Once every input is resolved: LX_EUSAGE if --revision was given but no
 * input was a model ID. */
lx_status cli_revision_used(const char *revision, const char *cmd);

/* The error for getopt_long's ':' (missing value) or '?' (unknown option). */
lx_status cli_bad_option(const char *cmd, int c, char **argv);

#endif
