/* sigbus.c - registry of mapped input files and the SIGBUS handler that turns
 * a fault in one of them into a one-line error (see sigbus.h).
 *
 * The handler may run in any thread at any moment, so it touches only
 * lock-free atomics, its own stack and async-signal-safe calls (write,
 * _exit, sigaction, raise).  A slot goes FREE -> BUSY (claimed by one
 * registering thread, fields being written) -> LIVE (visible to the
 * handler) -> BUSY (being cleared) -> FREE.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loxstream/sigbus.h"

/* Only lock-free atomics are async-signal-safe. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LONG_LOCK_FREE == 2 &&
               ATOMIC_POINTER_LOCK_FREE == 2, "the SIGBUS registry needs lock-free atomics");

enum { SLOT_FREE, SLOT_BUSY, SLOT_LIVE };

struct slot {
    atomic_int state;
    atomic_uintptr_t start;
    atomic_size_t len;
    _Atomic(char *) path;
};

static struct slot slots[LX_SIGBUS_SLOTS];
static atomic_size_t slots_used;   /* high-water mark: the handler scans no further */
static atomic_flag installed = ATOMIC_FLAG_INIT;
static atomic_int in_place;        /* the handler is installed */
static struct sigaction previous;  /* written once, before our handler is in place */
/* A thread in lx_sigbus_probe: where its SIGBUS goes back to (volatile:
 * the handler reads it, so the stores around the probe's reads stay). */
static _Thread_local sigjmp_buf *volatile probe_back;

/* Append s (at most up to the end of buf) and return the new end. */
static char *append(char *at, char *end, const char *s)
{
    while (*s && at < end)
        *at++ = *s++;
    return at;
}

/* As main.c prints messages: a control byte in the path (a file named
 * "x\n.safetensors") must not split the line or reach the terminal. */
static char *append_escaped(char *at, char *end, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p && end - at >= 4; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            *at++ = '\\';
            *at++ = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
        } else if (*p < 0x20 || *p == 0x7f) {
            *at++ = '\\';
            *at++ = 'x';
            *at++ = hex[*p >> 4];
            *at++ = hex[*p & 15];
        } else {
            *at++ = (char)*p;
        }
    }
    return at;
}

static char *append_u64(char *at, char *end, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n > 0 && at < end)
        *at++ = digits[--n];
    return at;
}

static void write_stderr(const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(STDERR_FILENO, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/* The registered mapping holding addr, as its path and the offset of addr;
 * NULL if none.  A slot is read between two checks of its state so that one
 * being cleared meanwhile is not taken. */
static const char *find_mapping(uintptr_t addr, uint64_t *offset)
{
    size_t n = atomic_load(&slots_used);
    for (size_t i = 0; i < n; i++) {
        struct slot *s = &slots[i];
        if (atomic_load(&s->state) != SLOT_LIVE)
            continue;
        uintptr_t start = atomic_load(&s->start);
        size_t len = atomic_load(&s->len);
        const char *path = atomic_load(&s->path);
        if (atomic_load(&s->state) != SLOT_LIVE)
            continue;
        if (addr >= start && addr - start < len) {
            *offset = (uint64_t)(addr - start);
            return path;
        }
    }
    return NULL;
}

static void on_sigbus(int sig, siginfo_t *si, void *context)
{
    (void)context;
    if (probe_back) {
        sigjmp_buf *back = probe_back;
        probe_back = NULL;
        siglongjmp(*back, 1);
    }
    uint64_t offset = 0;
    const char *path = find_mapping((uintptr_t)si->si_addr, &offset);
    if (path) {
        char msg[4096];
        char *at = msg, *end = msg + sizeof msg - 1;
        at = append(at, end, "loxstream: ");
        /* keep room for the rest of the line if the path is very long */
        at = append_escaped(at, end - 200, path);
        at = append(at, end, ": input file changed or was truncated while being read (SIGBUS at offset ");
        at = append_u64(at, end, offset);
        at = append(at, end, "); the output is incomplete and is not marked complete");
        *at++ = '\n';
        write_stderr(msg, (size_t)(at - msg));
        _exit(LX_EFAIL);
    }
    /* Not one of ours: put back the previous action (the default, or a
     * sanitizer's handler).  A fault returns and repeats the access, which
     * then gets that action; a signal sent by kill(2) is sent again. */
    int saved = errno;
    sigaction(sig, &previous, NULL);
    if (si->si_code <= 0)
        raise(sig);
    errno = saved;
}

lx_status lx_sigbus_install(void)
{
    if (atomic_flag_test_and_set(&installed))
        return LX_OK;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous) != 0) {
        int e = errno;
        atomic_flag_clear(&installed);
        return lx_fail_errno(LX_EFAIL, e, "cannot install the SIGBUS handler");
    }
    atomic_store(&in_place, 1);
    return LX_OK;
}

int lx_sigbus_probe(const void *addr, size_t len, size_t stride)
{
    if (!atomic_load(&in_place) || !stride)
        return -1;
    sigjmp_buf back;
    if (sigsetjmp(back, 1))
        return -1; /* the handler cleared probe_back */
    probe_back = &back;
    volatile const unsigned char *p = addr;
    unsigned char sink = 0;
    for (size_t o = 0; o < len; o += stride)
        sink ^= p[o];
    probe_back = NULL;
    (void)sink;
    return 0;
}

int lx_sigbus_register(const void *addr, size_t len, const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -1;
    for (size_t i = 0; i < LX_SIGBUS_SLOTS; i++) {
        struct slot *s = &slots[i];
        int expect = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&s->state, &expect, SLOT_BUSY))
            continue;
        atomic_store(&s->start, (uintptr_t)addr);
        atomic_store(&s->len, len);
        atomic_store(&s->path, copy);
        /* raise the high-water mark before the slot goes live */
        size_t used = atomic_load(&slots_used);
        while (used < i + 1 && !atomic_compare_exchange_weak(&slots_used, &used, i + 1))
            ;
        atomic_store(&s->state, SLOT_LIVE);
        return 0;
    }
    free(copy);
    return -1;
}

void lx_sigbus_unregister(const void *addr)
{
    size_t n = atomic_load(&slots_used);
    for (size_t i = 0; i < n; i++) {
        struct slot *s = &slots[i];
        if (atomic_load(&s->state) != SLOT_LIVE || atomic_load(&s->start) != (uintptr_t)addr)
            continue;
        int expect = SLOT_LIVE;
        if (!atomic_compare_exchange_strong(&s->state, &expect, SLOT_BUSY))
            continue;
        char *path = atomic_exchange(&s->path, NULL);
        atomic_store(&s->start, 0);
        atomic_store(&s->len, 0);
        atomic_store(&s->state, SLOT_FREE);
        free(path);
        return;
    }
}
