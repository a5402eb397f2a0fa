/* lanes.c - two lanes of factorisations (lanes.h): the job's thread and one
 * more pull the next unclaimed matrix of the list, in list order, at most
 * `ahead` beyond the one the job is taking or writing (the one it took
 * last), and factor it on half the threads (the lane threads / 2, the job
 * the rest).  While the job waits for a position with nothing to claim (the
 * lane factors the one it wants, the window or the cap holds it back: the
 * first matrix, the last, one too large for two at once), the lane's
 * matrix runs on all the threads (the count is read at each pass and
 * product), and on its half again once the job goes on; likewise the
 * job's while the lane thread is idle.  The waits for a position computed
 * in vain and lx_lanes_factor's for the cap widen nothing.
 *
 * One mutex guards the states; the factorisations and before() run outside
 * it.  Two SVDs run at once only while their working memory
 * (lx_engine_svd_bytes) stays within the cap; else one waits.  A matrix of
 * an item other than its first (b > 0) is claimed only once before() has
 * run for the item, so that nothing of the item is read by a pass before
 * it.  A lane's failure is kept with its message (the
 * message is per thread) and handed to the job when it takes that position,
 * so a job sees its failures in the order it would have without the lanes.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/lanes.h"
#include "loxstream/linalg.h"

enum { UNCLAIMED, CLAIMED, DONE, TAKEN };

typedef struct slot {
    lx_lane_mat m;
    int state;
    atomic_int width;              /* threads its factorisation uses (read at each pass) */
    uint64_t bytes;                /* its SVD's working memory */
    int ready;                     /* b == 0: before() has run for the item */
    size_t first;                  /* the position of the item's first matrix */
    lx_status st;
    char *msg;                     /* st's message (lx_err_save) */
    lx_factors f;
    lx_factor_stats s;
} slot;

/* A thread of the two: its share of the threads, and what it factors. */
typedef struct role {
    int share;
    slot *at;                      /* NULL: nothing */
} role;

struct lx_lanes {
    lx_engine_opts e;
    slot *q;
    size_t n, ahead;
    role lane, job;                /* the lane thread's and the job thread's */
    size_t taking;                 /* the position the job takes next */
    size_t at;                     /* the one it takes or writes: the window's base */
    uint64_t inflight, cap;        /* working memory of the SVDs running; their cap */
    lx_lane_before_fn before;
    void *ctx;
    int stop, started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
};

/* The next position to claim, or SIZE_MAX; under mu. */
static size_t claimable(const lx_lanes *L)
{
    size_t hi = L->at + L->ahead < L->n ? L->at + L->ahead + 1 : L->n;
    for (size_t p = L->taking; p < hi; p++) {
        const slot *s = &L->q[p];
        if (s->state != UNCLAIMED)
            continue;
        if (s->m.b > 0 && !L->q[s->first].ready)
            return SIZE_MAX; /* in list order: wait for the item's first */
        if (L->inflight && L->inflight + s->bytes > L->cap)
            return SIZE_MAX; /* one at a time: two would not fit the cap */
        return p;
    }
    return SIZE_MAX;
}

/* lx_engine_factor on this thread at *width threads, read at each pass (the
 * same bits whatever the count). */
static lx_status follow(const lx_lanes *L, const atomic_int *width, const lx_plan_item *it,
                        uint64_t b, int rank, lx_factors *f, lx_factor_stats *s)
{
    lx_linalg_follow_threads(width, L->e.threads);
#ifdef _OPENMP
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    lx_status st = lx_engine_factor(&L->e, it, b, rank, f, s);
#ifdef _OPENMP
    omp_set_num_threads(nt);
#endif
    lx_linalg_follow_threads(NULL, 0);
    return st;
}

/* Factor position p (claimed) on this thread, in role r (on its share of
 * the threads); under mu on entry and exit. */
static void factor(lx_lanes *L, size_t p, role *r)
{
    slot *s = &L->q[p];
    s->state = CLAIMED;
    atomic_store(&s->width, r->share);
    r->at = s;
    L->inflight += s->bytes;
    pthread_mutex_unlock(&L->mu);
    if (s->m.b == 0 && L->before)
        L->before(L->ctx, s->m.it);
    pthread_mutex_lock(&L->mu);
    s->ready = 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    s->st = follow(L, &s->width, s->m.it, s->m.b, s->m.rank, &s->f, &s->s);
    if (s->st != LX_OK)
        s->msg = lx_err_save();
    pthread_mutex_lock(&L->mu);
    r->at = NULL;
    s->state = DONE;
    L->inflight -= s->bytes;
    pthread_cond_broadcast(&L->cv);
}

/* Wait for a change with nothing to claim, the other thread's matrix (if
 * any) on all the threads meanwhile and on its share again after; under
 * mu.  A width takes effect at the factorisation's next pass or product. */
static void wait_wide(lx_lanes *L, const role *other)
{
    slot *w = other->at;
    if (w)
        atomic_store(&w->width, L->e.threads);
    pthread_cond_wait(&L->cv, &L->mu);
    if (w && other->at == w)
        atomic_store(&w->width, other->share);
}

static void *lane(void *arg)
{
    lx_lanes *L = arg;
    pthread_mutex_lock(&L->mu);
    while (!L->stop) {
        size_t p = claimable(L);
        if (p == SIZE_MAX) {
            wait_wide(L, &L->job);
            continue;
        }
        factor(L, p, &L->lane);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

lx_lanes *lx_lanes_start(const lx_engine_opts *e, const lx_lane_mat *mats, size_t n,
                         size_t ahead, uint64_t cap, lx_lane_before_fn before, void *ctx)
{
    lx_lanes *L = calloc(1, sizeof *L);
    if (!L || !(L->q = calloc(n ? n : 1, sizeof *L->q))) {
        free(L);
        lx_fail(LX_EFAIL, "out of memory");
        return NULL;
    }
    L->e = *e;
    L->n = n;
    L->ahead = ahead;
    L->cap = cap;
    L->before = before;
    L->ctx = ctx;
    L->lane.share = e->threads / 2 > 0 ? e->threads / 2 : 1;
    L->job.share = e->threads - L->lane.share > 0 ? e->threads - L->lane.share : 1;
    for (size_t p = 0; p < n; p++) {
        L->q[p].m = mats[p];
        L->q[p].first = p >= mats[p].b ? p - (size_t)mats[p].b : p;
        L->q[p].bytes = lx_engine_svd_bytes(e, mats[p].it, mats[p].rank);
    }
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    if (pthread_create(&L->th, NULL, lane, L) != 0) {
        lx_lanes_stop(L);
        lx_fail(LX_EFAIL, "cannot start a thread to factor matrices ahead");
        return NULL;
    }
    L->started = 1;
    return L;
}

lx_lanes *lx_lanes_open(const lx_engine_opts *e, const lx_budget *b, uint64_t need_max,
                        const lx_lane_item *items, size_t n, lx_lane_before_fn before, void *ctx)
{
    if (e->threads < 2 || e->factors || b->limit.bytes)
        return NULL;
    size_t nm = 0;
    uint64_t held = 0; /* U, V and V^T of the largest matrix's factors */
    for (size_t i = 0; i < n; i++) {
        const lx_plan_item *it = items[i].it;
        uint64_t f = (it->m + 2 * it->n) * (uint64_t)items[i].rank * sizeof(float);
        held = f > held ? f : held;
        nm += (size_t)it->batch;
    }
    if (nm < 2 || need_max + LX_FIXED_OVERHEAD + LX_LANES_MEMORY + LX_LANES_AHEAD * held >
                      e->max_memory)
        return NULL;
    lx_lane_mat *mats = malloc(nm * sizeof *mats);
    if (!mats)
        return NULL; /* without lanes: only the time differs */
    nm = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t bi = 0; bi < items[i].it->batch; bi++)
            mats[nm++] = (lx_lane_mat){items[i].it, bi, items[i].rank};
    lx_lanes *L = lx_lanes_start(e, mats, nm, LX_LANES_AHEAD, LX_LANES_MEMORY, before, ctx);
    free(mats);
    return L;
}

size_t lx_lanes_find(const lx_lanes *L, const lx_plan_item *it, uint64_t b)
{
    /* positions are in the job's order: from the one taken next on */
    for (size_t p = L->taking; p < L->n; p++)
        if (L->q[p].m.it == it && L->q[p].m.b == b)
            return p;
    return SIZE_MAX;
}

lx_status lx_lanes_take(lx_lanes *L, size_t pos, lx_factors *f, lx_factor_stats *s)
{
    pthread_mutex_lock(&L->mu);
    /* skipped positions: computed in vain (or not at all) */
    for (; L->taking < pos; L->taking++) {
        slot *k = &L->q[L->taking];
        while (k->state == CLAIMED)
            pthread_cond_wait(&L->cv, &L->mu);
        if (k->state == UNCLAIMED) /* never to be factored, but its item may wait on it */
            k->ready = 1;
        lx_factors_free(&k->f);
        free(k->msg);
        k->msg = NULL;
        k->state = TAKEN;
    }
    L->at = pos;
    pthread_cond_broadcast(&L->cv); /* the window moved */
    slot *k = &L->q[pos];
    while (k->state != DONE) {
        size_t p = claimable(L);
        if (p != SIZE_MAX) {
            factor(L, p, &L->job);
        } else {
            wait_wide(L, &L->lane);
        }
    }
    k->state = TAKEN;
    L->taking = pos + 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    s->matrices += k->s.matrices;
    s->unconverged += k->s.unconverged;
    s->ungapped += k->s.ungapped;
    s->seconds += k->s.seconds;
    s->flops += k->s.flops;
    *f = k->f;
    memset(&k->f, 0, sizeof k->f);
    lx_status st = k->st;
    char *msg = k->msg;
    k->msg = NULL;
    return st == LX_OK ? LX_OK : lx_err_restore(st, msg);
}

lx_status lx_lanes_factor(lx_lanes *L, const lx_plan_item *it, uint64_t b, int rank,
                          lx_factors *f, lx_factor_stats *s)
{
    uint64_t bytes = lx_engine_svd_bytes(&L->e, it, rank);
    pthread_mutex_lock(&L->mu);
    while (L->inflight && L->inflight + bytes > L->cap)
        pthread_cond_wait(&L->cv, &L->mu);
    L->inflight += bytes;
    pthread_mutex_unlock(&L->mu);
    atomic_int width = L->job.share;
    lx_status st = follow(L, &width, it, b, rank, f, s);
    pthread_mutex_lock(&L->mu);
    L->inflight -= bytes;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    return st;
}

lx_status lx_lanes_get(lx_lanes *L, const lx_engine_opts *e, const lx_plan_item *it,
                       uint64_t b, int rank, lx_factors *f, lx_factor_stats *s)
{
    if (!L)
        return lx_engine_factor(e, it, b, rank, f, s);
    size_t pos = lx_lanes_find(L, it, b);
    return pos != SIZE_MAX ? lx_lanes_take(L, pos, f, s) : lx_lanes_factor(L, it, b, rank, f, s);
}

void lx_lanes_stop(lx_lanes *L)
{
    if (!L)
        return;
    if (L->started) {
        pthread_mutex_lock(&L->mu);
        L->stop = 1;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
        pthread_join(L->th, NULL);
    }
    for (size_t p = 0; p < L->n; p++) {
        lx_factors_free(&L->q[p].f);
        free(L->q[p].msg);
    }
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
    free(L->q);
    free(L);
}
