/* progress.c - progress lines through the job's reporter (see progress.h). */
#include <stdio.h>
#include <string.h>

#include "loxstream/progress.h"
#include "loxstream/parse.h"
#include "loxstream/sys.h"

#define PLAIN_INTERVAL 5.0 /* seconds between plain lines when not on a TTY */
#define TTY_INTERVAL 0.2

void lx_progress_begin(lx_progress *p, const char *what, uint64_t items, uint64_t bytes, int quiet,
                       const lx_reporter *r)
{
    memset(p, 0, sizeof *p);
    p->what = what;
    p->r = r;
    p->total_items = items;
    p->total_bytes = bytes;
    p->quiet = quiet;
    p->tty = r && r->tty;
    p->start = p->last_print = lx_now();
}

static void format_eta(double seconds, char *buf, size_t len)
{
    if (seconds < 0 || seconds > 1e7)
        snprintf(buf, len, "--:--");
    else if (seconds >= 3600)
        snprintf(buf, len, "%d:%02d:%02d", (int)seconds / 3600, ((int)seconds / 60) % 60,
                 (int)seconds % 60);
    else
        snprintf(buf, len, "%02d:%02d", (int)seconds / 60, (int)seconds % 60);
}

static void print_line(lx_progress *p, const char *current)
{
    double now = lx_now(), elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)p->done_bytes / elapsed : 0;
    double frac = p->total_bytes ? (double)p->done_bytes / (double)p->total_bytes
                                 : p->total_items ? (double)p->done_items / (double)p->total_items
                                                  : 1;
    char done[32], total[32], rbuf[32], eta[16];
    lx_format_size(p->done_bytes, done, sizeof done);
    lx_format_size(p->total_bytes, total, sizeof total);
    lx_format_size((uint64_t)rate, rbuf, sizeof rbuf);
    format_eta(rate > 0 ? (double)(p->total_bytes - p->done_bytes) / rate : -1, eta, sizeof eta);
    if (p->tty) {
        char bar[21];
        int fill = (int)(frac * 20 + 0.5);
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        lx_say_kind(p->r, LX_LINE_BAR, "%s [%s] %3.0f%% %llu/%llu tensors %s/%s %s/s ETA %s %.40s",
                p->what, bar, 100 * frac, (unsigned long long)p->done_items,
                (unsigned long long)p->total_items, done, total, rbuf, eta,
                current ? current : "");
    } else {
        lx_say(p->r, "%s: %3.0f%% %llu/%llu tensors, %s/%s, %s/s, ETA %s", p->what,
                100 * frac, (unsigned long long)p->done_items, (unsigned long long)p->total_items,
                done, total, rbuf, eta);
    }
    p->printed = 1;
    p->last_print = now;
}

void lx_progress_update(lx_progress *p, uint64_t items, uint64_t bytes, const char *current)
{
    p->done_items = items;
    p->done_bytes = bytes;
    if (p->quiet)
        return;
    if (lx_now() - p->last_print >= (p->tty ? TTY_INTERVAL : PLAIN_INTERVAL))
        print_line(p, current);
}

void lx_progress_end(lx_progress *p)
{
    if (p->quiet)
        return;
    double elapsed = lx_now() - p->start;
    char total[32], rbuf[32];
    lx_format_size(p->done_bytes, total, sizeof total);
    lx_format_size(elapsed > 0 ? (uint64_t)((double)p->done_bytes / elapsed) : 0, rbuf,
                   sizeof rbuf);
    /* (a bar on a terminal is cleared before this line: report.h) */
    lx_say(p->r, "%s: %llu tensors, %s in %.2f s (%s/s)", p->what,
            (unsigned long long)p->done_items, total, elapsed, rbuf);
}
