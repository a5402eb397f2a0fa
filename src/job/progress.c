/* progress.c - progress lines through the job's reporter (see progress.h):
 * what they say, and on a terminal how a bar fits its width. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "loxstream/progress.h"
#include "loxstream/parse.h"
#include "loxstream/safetensors.h"
#include "loxstream/sys.h"
#include "loxstream/testhook.h"

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

#define NAME_MIN 16 /* columns of tensor name worth keeping the bar's other parts for */

/* The parts of a bar, dropped in this order while the line is too wide:
 * the bar shortened, then gone, the tensor count, the byte counts.  What,
 * percent, rate and ETA stay; the tensor name gets what is left. */
static const struct { int bar, items, sizes; } bar_levels[] = {
    {20, 1, 1}, {10, 1, 1}, {0, 1, 1}, {0, 0, 1}, {0, 0, 0},
};

/* The bar line for a terminal of width columns (0: no limit) into out,
 * at most width - 1 columns (the last one stays free: no line wraps). */
static void bar_line(char *out, size_t cap, int width, const char *what, double frac,
                     const char *items, const char *sizes, const char *rate, const char *eta,
                     const char *name)
{
    size_t avail = width > 1 ? (size_t)width - 1 : width == 1 ? 1 : SIZE_MAX;
    size_t namecols = lx_text_columns(name), n = 0, room = 0;
    const size_t nlevels = sizeof bar_levels / sizeof bar_levels[0];
    for (size_t l = 0; l < nlevels; l++) {
        char bar[24] = "";
        int bw = bar_levels[l].bar, fill = (int)(frac * bw + 0.5);
        if (bw) {
            bar[0] = ' ';
            bar[1] = '[';
            for (int i = 0; i < bw; i++)
                bar[2 + i] = i < fill ? '#' : '.';
            bar[2 + bw] = ']';
            bar[3 + bw] = '\0';
        }
        int k = snprintf(out, cap, "%s%s %3.0f%%%s%s%s%s %s/s ETA %s", what, bar, 100 * frac,
                         bar_levels[l].items ? " " : "", bar_levels[l].items ? items : "",
                         bar_levels[l].sizes ? " " : "", bar_levels[l].sizes ? sizes : "", rate,
                         eta);
        n = k < 0 ? 0 : (size_t)k < cap ? (size_t)k : cap - 1;
        room = n + 1 < avail ? avail - n - 1 : 0;
        if (room >= namecols || room >= NAME_MIN)
            break;
    }
    if (n > avail) { /* narrower than what must stay: cut (the parts are ASCII) */
        out[avail] = '\0';
        return;
    }
    if (!namecols || room < 4)
        return;
    /* a long name loses its start: the layer and projection are at its end */
    const char *tail = name;
    if (namecols > room) {
        for (size_t skip = namecols - (room - 3); skip > 0 || (*tail & 0xc0) == 0x80; tail++)
            if ((*tail & 0xc0) != 0x80)
                skip--;
    }
    snprintf(out + n, cap - n, " %s%s", tail == name ? "" : "...", tail);
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
        char items[64], sizes[80], name[LX_NAME_QUOTE], line[512];
        snprintf(items, sizeof items, "%llu/%llu tensors", (unsigned long long)p->done_items,
                 (unsigned long long)p->total_items);
        snprintf(sizes, sizeof sizes, "%s/%s", done, total);
        /* a control byte in a (hostile) name would move the cursor */
        lx_st_escape_name(current ? current : "", name, sizeof name);
        p->columns = lx_report_columns(p->r);
        bar_line(line, sizeof line, p->columns, p->what, frac, items, sizes, rbuf, eta, name);
        lx_say_kind(p->r, LX_LINE_BAR, "%s", line);
        lx_test_bar_drawn();
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
    /* a terminal that changed width (SIGWINCH) gets its bar redrawn now */
    if (lx_now() - p->last_print >= (p->tty ? TTY_INTERVAL : PLAIN_INTERVAL) ||
        (p->tty && ((p->printed && lx_report_columns(p->r) != p->columns) || lx_test_bar_every())))
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
