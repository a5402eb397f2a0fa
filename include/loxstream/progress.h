/* progress.h - progress through the job's reporter (report.h): a bar when
 * the reporter is a terminal, plain lines otherwise (one every few
 * seconds), nothing when quiet.  The bar fits the terminal's width
 * (lx_reporter.columns): the tensor name is shortened first, then the bar
 * and the counts dropped; percent, rate and ETA stay.  It is redrawn at
 * the next update when the width changes. */
#ifndef LOXSTREAM_PROGRESS_H
#define LOXSTREAM_PROGRESS_H

#include <stdint.h>

#include "loxstream/report.h"

typedef struct lx_progress {
    const char *what;              /* "apply", "synth", ... */
    uint64_t total_items, total_bytes;
    uint64_t done_items, done_bytes;
    double start, last_print;
    int tty, quiet, printed;
    int columns;                   /* the terminal width of the last bar */
    const lx_reporter *r;
} lx_progress;

void lx_progress_begin(lx_progress *p, const char *what, uint64_t items, uint64_t bytes, int quiet,
                       const lx_reporter *r);
/* Record progress; prints when due.  `current` names the item being done. */
void lx_progress_update(lx_progress *p, uint64_t items, uint64_t bytes, const char *current);
/* Final line: totals, elapsed time and throughput. */
void lx_progress_end(lx_progress *p);

#endif
