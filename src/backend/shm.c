/* backend/shm.c - see shm.h.
 *
 * DESIGN. Every local rank owns one region of the segment: three counters, each on its own pair
 * of cache lines and written only by the owner, then two data buffers used alternately by
 * successive chunks (chunk number `seq`, counted over the plane's life, uses buffer seq % 2).
 * All ranks cut every collective into the same chunks (from values every rank has alike), so
 * `seq` agrees everywhere. Every kind keeps the same two rules, which is what lets any kind
 * follow any other: a rank writes its buffer for chunk seq only once every peer's `consumed`
 * has reached seq - 2, and every rank raises `consumed` = seq for every chunk (whether or not
 * it read anything) once it has finished reading every buffer of that chunk.
 *
 * Small allreduces (up to SMALL_BYTES): each rank copies its whole input (prescaled) into its
 * buffer and raises `ready`; once every rank is ready, each reads every buffer in rank order and
 * reduces the whole tensor itself (the same order everywhere, so the same bits everywhere), then
 * raises `reduced` and `consumed`. One synchronisation, no second pass.
 *
 * Larger ones: reduce-scatter then allgather through the buffers, per chunk:
 *   copy_in  - wait until every peer has consumed the buffer's previous chunk (seq - 2); copy
 *              the shares other ranks reduce (prescaled) into my buffer; raise ready = seq.
 *   reduce   - wait for every peer's ready; my share = my input (op) every peer's copy of that
 *              share, written once into my output, divided there while in cache, copied into my
 *              buffer for the others, then postscaled by me; raise reduced = seq.
 *   copy_out - for every peer, wait for its reduced and copy (postscaling) its share into my
 *              output; raise consumed = seq.
 * Chunk i + 1 is copied in before chunk i is reduced, so a peer can start reducing it as soon
 * as it is done with chunk i: copies and reductions of neighbouring chunks overlap across
 * ranks. Each rank streams its S bytes in once, the reduce reads S and writes S/L twice, the
 * copy-out moves (L-1)/L S: about 3 S of traffic per rank, where MPI's shared-memory allreduce
 * moves several more copies through its own buffers.
 *
 * Broadcast, per chunk of up to PIPE_BYTES: the root waits for the buffer (seq - 2), copies the
 * chunk in and raises ready; every other rank waits for the root's ready, copies the chunk out;
 * all raise consumed. The root never waits for a reader of the chunk it just wrote, only of the
 * one two chunks back: it runs one chunk ahead of the slowest reader.
 *
 * Allgather(v), per chunk: each rank copies the next piece of its own part (up to PIPE_BYTES)
 * into its buffer and raises ready (gather_in), then for every peer waits for its ready and
 * copies that peer's piece to its place in recv, and raises consumed (gather_out). As for
 * allreduce, chunk i + 1 is copied in before chunk i is copied out. A rank's own part goes from
 * send to recv directly, while the peers fill their first chunks. The number of chunks follows
 * from the largest part (the counts are the same on every rank); a rank whose part is shorter
 * still counts the chunks, with nothing to copy.
 *
 * Reducescatter, per chunk: each rank's buffer holds nranks - 1 slots, one for every other
 * rank q: the next piece of q's part of this rank's input (scatter_in). Then each rank reduces
 * its own part's piece from its input (read where it lies) and every peer's slot for it, in
 * rank order, straight into recv (scatter_reduce), and raises consumed. Each rank copies
 * (L-1)/L of its input once and reads it once more reducing: MPI's reduce-scatter moves it
 * several times (docs/shm.md has the measurements).
 *
 * Hierarchical (ranks on several hosts): `across` combines each locally reduced share (or, for
 * small tensors, the whole) with the other hosts' before the divisor and postscale, so the
 * host's ranks copy out global results. Only allreduce has that step: the other kinds run on
 * a flat plane only (every rank on this host).
 *
 * Stores into the segment (allreduce, from 256 KiB): regular or streaming (non-temporal, x86
 * only). Which is faster depends on where the two cores sit: cores sharing a cache hand data
 * over through it, and streaming stores, which send it to memory, cost 15-50 % more; cores that
 * do not (seen on this VM, which moves its vCPUs) pay for every line a regular store takes back
 * from the other core, and streaming stores save 12-30 %. So each rank measures both, per size
 * class: its own time copying and reducing (waits excluded) per byte, averaged; it uses the
 * faster and tries the other every EXPLORE calls of that class. HERD_SHM_STREAM_STORES fixes
 * either.
 * The choice is each rank's own: either way it writes the same bytes, ordered before the
 * counter that publishes them (sfence).
 *
 * Waiting: spin briefly on the counter, then sched_yield (for up to 50 ms), then sleep with a
 * growing backoff (to 1 ms): an oversubscribed host still makes progress, and a wait costs no
 * core for long. Slow waits check whether the peer's process still exists and give up after the
 * timeout. After any failure the ranks may disagree about `seq`, so the plane refuses every
 * later call, of every kind.
 */
#include "backend/shm.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dtype.h"
#include "herd.h"
#include "status.h"
#include "util/clock.h"
#include "util/thread.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_STREAM 1
#else
#define HAVE_STREAM 0
#endif

enum {
    LINE = 64,
    CTRL_BYTES = 512,      /* counters at 0, 128, 256; the pid at 384; costs at COSTS_AT */
    COSTS_AT = 400,        /* STORE_CLASSES x 2 floats: what each way cost this rank */
    SMALL_BYTES = 16384,   /* whole-tensor reduction on every rank up to this */
    SPINS = 256,           /* counter checks before the first sched_yield */
    PIPE_BYTES = 262144,   /* broadcast, allgather, reducescatter: bytes a rank writes per chunk */
    STREAM_MIN_LOG2 = 18,  /* allreduces from 256 KiB measure regular against streaming stores */
    STORE_CLASSES = 13,    /* one per power of two from there, the last for 1 GiB and up */
    FIRST_CALLS = 4,       /* a class alternates the two ways for its first calls */
    EXPLORE = 32,          /* then tries the slower way once every this many calls */
};
_Static_assert(COSTS_AT + STORE_CLASSES * 2 * 4 <= CTRL_BYTES, "the cost table fits");
#define SWITCH_MARGIN 0.05 /* a way must be this much cheaper to take over */
enum { C_READY = 0, C_REDUCED = 1, C_CONSUMED = 2 };
#define YIELD_NS INT64_C(50000000)  /* sched_yield for this long, then sleep */
#define MAX_SLEEP_NS INT64_C(1000000)
#define CHECK_NS INT64_C(10000000)  /* slow waits look at the peer's pid this often */

/* What each way of storing into the segment cost this rank in one size class: ns of its own
 * copying and reducing per byte (0: not measured yet), also published in its control lines. */
typedef struct stores {
    float cost[2]; /* [0] regular stores, [1] streaming */
    uint32_t calls;
    int way;       /* the way in use */
} stores_t;

struct herd_shm {
    int nranks, me;
    char **regions;     /* regions[r] */
    size_t buf_bytes;   /* bytes of each of a region's two buffers */
    int64_t timeout_ns; /* 0: never */
    int (*across)(void *ctx, void *buf, int64_t count, int dtype, int op);
    void *across_ctx;
    uint64_t seq;       /* chunks run so far; coordinator only */
    const char *kind;   /* the collective running, for messages */
    int broken;
    int stream_mode;    /* HERD_SHM_STREAM_STORES: 0 regular, 1 streaming, 2 measure and choose */
    int stream;         /* this call's way */
    int measuring;      /* this call counts wait time into waited_ns */
    int64_t waited_ns;
    stores_t stores[STORE_CLASSES];
    char why[256];
};

static _Atomic uint64_t *counter(const herd_shm_t *s, int rank, int which)
{
    return (_Atomic uint64_t *)(void *)(s->regions[rank] + 128 * which);
}

static _Atomic int *pid_of(const herd_shm_t *s, int rank)
{
    return (_Atomic int *)(void *)(s->regions[rank] + 384);
}

/* Rank `rank`'s published cost of `way` in size class `cls` (float bits; 0: not measured). */
static _Atomic uint32_t *cost_of(const herd_shm_t *s, int rank, int cls, int way)
{
    return (_Atomic uint32_t *)(void *)(s->regions[rank] + COSTS_AT) + 2 * cls + way;
}

static char *buffer(const herd_shm_t *s, int rank, uint64_t seq)
{
    return s->regions[rank] + CTRL_BYTES + (seq & 1) * s->buf_bytes;
}

static void publish(herd_shm_t *s, int which, uint64_t seq)
{
    atomic_store_explicit(counter(s, s->me, which), seq, memory_order_release);
}

__attribute__((format(printf, 3, 4))) static int fail(herd_shm_t *s, int status,
                                                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    s->broken = 1;
    return herd__status_set(status, "%s", s->why);
}

/* An error from `across`: its message stays this thread's last error. */
static int broken(herd_shm_t *s, int status)
{
    snprintf(s->why, sizeof s->why, "%s", herd__status_last());
    s->broken = 1;
    return status;
}

/* Waits until `rank`'s counter `which` reaches `seq`. */
static int wait_counter(herd_shm_t *s, int rank, int which, uint64_t seq)
{
    _Atomic uint64_t *c = counter(s, rank, which);
    for (int i = 0; i < SPINS; i++) {
        if (atomic_load_explicit(c, memory_order_acquire) >= seq)
            return HERD_OK;
        herd__cpu_relax();
    }
    int64_t start = herd__clock_ns(), check = start + CHECK_NS, nap = 20000;
    while (atomic_load_explicit(c, memory_order_acquire) < seq) {
        int64_t now = herd__clock_ns();
        if (now - start < YIELD_NS) {
            sched_yield();
        } else {
            struct timespec ts = {0, (long)nap};
            nanosleep(&ts, NULL);
            nap = nap * 2 > MAX_SLEEP_NS ? MAX_SLEEP_NS : nap * 2;
        }
        if (now < check)
            continue;
        check = now + CHECK_NS;
        int pid = atomic_load_explicit(pid_of(s, rank), memory_order_relaxed);
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
            return fail(s, HERD_ERR_BACKEND,
                        "shared-memory %s: local rank %d (pid %d) has exited (chunk %llu)",
                        s->kind, rank, pid, (unsigned long long)seq);
        if (s->timeout_ns > 0 && now - start > s->timeout_ns)
            return fail(s, HERD_ERR_TIMEOUT,
                        "shared-memory %s: local rank %d did not reach chunk %llu within %lld "
                        "ms (HERD_STALL_TIMEOUT_SECONDS)",
                        s->kind, rank, (unsigned long long)seq,
                        (long long)(s->timeout_ns / 1000000));
    }
    return HERD_OK;
}

/* wait_counter, timed while a call measures itself. */
static int wait_for(herd_shm_t *s, int rank, int which, uint64_t seq)
{
    if (!s->measuring)
        return wait_counter(s, rank, which, seq);
    int64_t t0 = herd__clock_ns();
    int rc = wait_counter(s, rank, which, seq);
    s->waited_ns += herd__clock_ns() - t0;
    return rc;
}

static int wait_all(herd_shm_t *s, int which, uint64_t seq)
{
    for (int q = 0; q < s->nranks; q++) {
        if (q == s->me)
            continue;
        int rc = wait_for(s, q, which, seq);
        if (rc != HERD_OK)
            return rc;
    }
    return HERD_OK;
}

/* ---- streaming stores -------------------------------------------------------------------- */

/* memcpy with non-temporal stores (the head up to 16-byte alignment and the tail regular),
 * fenced so that a release store after it publishes the data. */
static void stream_copy(void *dst, const void *src, size_t n)
{
#if HAVE_STREAM
    char *d = dst;
    const char *x = src;
    size_t head = (size_t)(-(uintptr_t)d & 15);
    head = head < n ? head : n;
    memcpy(d, x, head);
    d += head;
    x += head;
    n -= head;
    size_t body = n & ~(size_t)63;
    for (size_t i = 0; i < body; i += 64) {
        const __m128i *v = (const __m128i *)(const void *)(x + i);
        __m128i a = _mm_loadu_si128(v), b = _mm_loadu_si128(v + 1);
        __m128i c = _mm_loadu_si128(v + 2), e = _mm_loadu_si128(v + 3);
        __m128i *o = (__m128i *)(void *)(d + i);
        _mm_stream_si128(o, a);
        _mm_stream_si128(o + 1, b);
        _mm_stream_si128(o + 2, c);
        _mm_stream_si128(o + 3, e);
    }
    memcpy(d + body, x + body, n - body);
    _mm_sfence();
#else
    memcpy(dst, src, n);
#endif
}

/* Copies n bytes into the segment, streaming or not. */
static void seg_copy(int stream, void *dst, const void *src, size_t n)
{
    if (stream)
        stream_copy(dst, src, n);
    else
        memcpy(dst, src, n);
}

/* The size class of an allreduce of `bytes`, or -1 when its way is fixed: below 256 KiB
 * (regular stores), or by HERD_SHM_STREAM_STORES. */
static int store_class(const herd_shm_t *s, int64_t bytes)
{
    if (s->stream_mode != 2 || bytes < (INT64_C(1) << STREAM_MIN_LOG2))
        return -1;
    int k = 0;
    while (k + 1 < STORE_CLASSES && bytes >> (STREAM_MIN_LOG2 + k + 1) != 0)
        k++;
    return k;
}

/* The way for this call of class k. The first calls alternate; then the way whose costs,
 * summed over the local ranks' published tables, are lower by SWITCH_MARGIN takes over (all
 * ranks read the same tables, so they mostly agree, and one rank's noise counts for 1/L);
 * once every EXPLORE calls, the same call on every rank, the other way runs to be measured
 * again (it may have become the cheaper one since). */
static int choose_way(herd_shm_t *s, int k)
{
    stores_t *c = &s->stores[k];
    uint32_t n = c->calls++;
    if (n < FIRST_CALLS)
        return (int)(n & 1);
    /* A peer whose way is fixed (HERD_SHM_STREAM_STORES 0 or 1 there) publishes nothing and is
     * left out; by now every measuring rank has measured both ways. */
    float sum[2] = {0, 0};
    for (int r = 0; r < s->nranks; r++) {
        float v[2];
        for (int w = 0; w < 2; w++) {
            uint32_t bits = atomic_load_explicit(cost_of(s, r, k, w), memory_order_relaxed);
            memcpy(&v[w], &bits, sizeof v[w]);
        }
        if (v[0] > 0 && v[1] > 0) {
            sum[0] += v[0];
            sum[1] += v[1];
        }
    }
    if (sum[!c->way] < sum[c->way] * (1 - SWITCH_MARGIN))
        c->way = !c->way;
    return n % EXPLORE == EXPLORE - 1 ? !c->way : c->way;
}

/* Folds one call's cost in and publishes it: the least of the first calls (they include
 * first touches of the buffers), then an average over the last few. */
static void learn_way(herd_shm_t *s, int k, int way, float ns_per_byte)
{
    stores_t *c = &s->stores[k];
    float *m = &c->cost[way];
    if (c->calls <= FIRST_CALLS)
        *m = *m == 0 || ns_per_byte < *m ? ns_per_byte : *m;
    else
        *m += (ns_per_byte - *m) / 4;
    uint32_t bits;
    memcpy(&bits, m, sizeof bits);
    atomic_store_explicit(cost_of(s, s->me, k, way), bits, memory_order_relaxed);
}

/* ---- element loops ----------------------------------------------------------------------
 * d = x (op) y, or d (op)= y when x is d. Signed integers add and multiply in their unsigned
 * type (wrapping, as MPI does, without C's signed overflow). */
#define LOOP2(T, EXPR)                                                                         \
    do {                                                                                       \
        T *d_ = d;                                                                             \
        const T *y_ = y;                                                                       \
        if (x == d) {                                                                          \
            for (size_t i = 0; i < n; i++) {                                                   \
                T u = d_[i], v = y_[i];                                                        \
                d_[i] = (EXPR);                                                                \
            }                                                                                  \
        } else {                                                                               \
            const T *x_ = x;                                                                   \
            for (size_t i = 0; i < n; i++) {                                                   \
                T u = x_[i], v = y_[i];                                                        \
                d_[i] = (EXPR);                                                                \
            }                                                                                  \
        }                                                                                      \
    } while (0)

#define OPS(T, U)                                                                              \
    do {                                                                                       \
        switch (op) {                                                                          \
        case HERD_MIN: LOOP2(T, v < u ? v : u); break;                                         \
        case HERD_MAX: LOOP2(T, v > u ? v : u); break;                                         \
        case HERD_PRODUCT: LOOP2(T, (T)((U)u * (U)v)); break;                                  \
        default: LOOP2(T, (T)((U)u + (U)v)); break;                                            \
        }                                                                                      \
    } while (0)

static void combine(int dtype, int op, void *d, const void *x, const void *y, size_t n)
{
    switch (dtype) {
    case HERD_UINT8: OPS(uint8_t, unsigned); break;
    case HERD_INT8: OPS(int8_t, unsigned); break;
    case HERD_INT32: OPS(int32_t, uint32_t); break;
    case HERD_INT64: OPS(int64_t, uint64_t); break;
    case HERD_FLOAT32: OPS(float, float); break;
    case HERD_FLOAT64: OPS(double, double); break;
    default: /* fp16, bf16: pairwise in float32, rounded, as the MPI backend's operations */
        if (x != d)
            memcpy(d, x, n * 2);
        herd__half_combine(dtype, op, y, d, n);
        break;
    }
}

/* The last combining step of a share, fused with what follows it: d = x (op) y, divided by
 * `divisor`, written to both d and `copy` (the buffer the peers read it from) in one pass
 * instead of three (combine, divide, copy). Each element rounds exactly as the separate passes
 * round it: float32 and float64 sums, then the division, as herd__dtype_finish divides. */
#define SUM_DIV_COPY(T)                                                                        \
    do {                                                                                       \
        T *d_ = d, *c_ = copy, dv = (T)divisor;                                                \
        const T *x_ = x, *y_ = y;                                                              \
        if (divisor > 1) {                                                                     \
            for (size_t i = 0; i < n; i++) {                                                   \
                T v = (x_[i] + y_[i]) / dv;                                                    \
                d_[i] = v;                                                                     \
                c_[i] = v;                                                                     \
            }                                                                                  \
        } else {                                                                               \
            for (size_t i = 0; i < n; i++) {                                                   \
                T v = x_[i] + y_[i];                                                           \
                d_[i] = v;                                                                     \
                c_[i] = v;                                                                     \
            }                                                                                  \
        }                                                                                      \
    } while (0)

#if HAVE_STREAM
/* SUM_DIV_COPY with streaming stores into `copy` (aligned to 16 bytes; the SSE arithmetic
 * rounds each element exactly as the scalar loop does), then fenced. */
#define SUM_DIV_STREAM(T, V, LOAD, ADD, DIV, STORE, STREAM, SET1)                              \
    do {                                                                                       \
        T *d_ = d, *c_ = copy, dv = (T)divisor;                                                \
        const T *x_ = x, *y_ = y;                                                              \
        const size_t lanes = 16 / sizeof(T);                                                   \
        V dvv = SET1(dv);                                                                      \
        size_t i = 0;                                                                          \
        for (; i + lanes <= n; i += lanes) {                                                   \
            V v = ADD(LOAD(x_ + i), LOAD(y_ + i));                                             \
            if (divisor > 1)                                                                   \
                v = DIV(v, dvv);                                                               \
            STORE(d_ + i, v);                                                                  \
            STREAM(c_ + i, v);                                                                 \
        }                                                                                      \
        for (; i < n; i++) {                                                                   \
            T v = x_[i] + y_[i];                                                               \
            v = divisor > 1 ? v / dv : v;                                                      \
            d_[i] = v;                                                                         \
            c_[i] = v;                                                                         \
        }                                                                                      \
        _mm_sfence();                                                                          \
    } while (0)
#endif

static void combine_last(int dtype, int op, void *d, void *copy, const void *x, const void *y,
                         size_t n, int divisor, int stream)
{
#if HAVE_STREAM
    if (stream && ((uintptr_t)copy & 15) == 0 && op == HERD_SUM && dtype == HERD_FLOAT32) {
        SUM_DIV_STREAM(float, __m128, _mm_loadu_ps, _mm_add_ps, _mm_div_ps, _mm_storeu_ps,
                       _mm_stream_ps, _mm_set1_ps);
        return;
    }
    if (stream && ((uintptr_t)copy & 15) == 0 && op == HERD_SUM && dtype == HERD_FLOAT64) {
        SUM_DIV_STREAM(double, __m128d, _mm_loadu_pd, _mm_add_pd, _mm_div_pd, _mm_storeu_pd,
                       _mm_stream_pd, _mm_set1_pd);
        return;
    }
#endif
    if (op == HERD_SUM && dtype == HERD_FLOAT32) {
        SUM_DIV_COPY(float);
    } else if (op == HERD_SUM && dtype == HERD_FLOAT64) {
        SUM_DIV_COPY(double);
    } else {
        combine(dtype, op, d, x, y, n);
        herd__dtype_finish(dtype, d, n, divisor, 1.0);
        seg_copy(stream, copy, d, n * herd__dtype_size(dtype));
    }
}

/* dst = src * pre (a copy when pre is 1). */
static void put(int dtype, void *dst, const void *src, size_t n, size_t esize, double pre)
{
    if (pre != 1.0)
        herd__dtype_scale_copy(dtype, dst, src, n, pre);
    else
        memcpy(dst, src, n * esize);
}

/* put() into the segment, the way this call stores (a prescaled copy stores regularly). */
static void seg_put(const herd_shm_t *s, int dtype, void *dst, const void *src, size_t n,
                    size_t esize, double pre)
{
    if (pre == 1.0)
        seg_copy(s->stream, dst, src, n * esize);
    else
        put(dtype, dst, src, n, esize, pre);
}

/* Every collective starts here: refused after a failure (the ranks may disagree about `seq`). */
static int usable(herd_shm_t *s, const char *kind)
{
    s->kind = kind;
    if (s->broken)
        return herd__status_set(HERD_ERR_BACKEND,
                                "the shared-memory data plane failed earlier and stays off: %s",
                                s->why);
    return HERD_OK;
}

/* ---- one allreduce ------------------------------------------------------------------------ */

typedef struct call {
    const char *send;
    char *recv;
    int dtype, op;
    size_t esize;
    const herd_scale_t *scale;
    int64_t share; /* elements per share of the current chunk */
} call_t;

/* Share q of a chunk of n elements: its first element and length (possibly 0). */
static int64_t share_len(const call_t *c, int q, int64_t n, int64_t *start)
{
    *start = (int64_t)q * c->share;
    if (*start >= n)
        return 0;
    return n - *start < c->share ? n - *start : c->share;
}

static int small_allreduce(herd_shm_t *s, const call_t *c, int64_t n)
{
    uint64_t seq = ++s->seq;
    int rc = seq > 2 ? wait_all(s, C_CONSUMED, seq - 2) : HERD_OK;
    if (rc != HERD_OK)
        return rc;
    put(c->dtype, buffer(s, s->me, seq), c->send, (size_t)n, c->esize, c->scale->pre);
    publish(s, C_READY, seq);
    rc = wait_all(s, C_READY, seq);
    if (rc != HERD_OK)
        return rc;
    if (s->nranks == 1)
        memcpy(c->recv, buffer(s, 0, seq), (size_t)n * c->esize);
    else
        combine(c->dtype, c->op, c->recv, buffer(s, 0, seq), buffer(s, 1, seq), (size_t)n);
    for (int q = 2; q < s->nranks; q++)
        combine(c->dtype, c->op, c->recv, c->recv, buffer(s, q, seq), (size_t)n);
    publish(s, C_REDUCED, seq);
    publish(s, C_CONSUMED, seq);
    if (s->across != NULL) {
        rc = s->across(s->across_ctx, c->recv, n, c->dtype, c->op);
        if (rc != HERD_OK)
            return broken(s, rc);
    }
    herd__dtype_finish(c->dtype, c->recv, (size_t)n, c->scale->divisor, c->scale->post);
    return HERD_OK;
}

static int copy_in(herd_shm_t *s, const call_t *c, uint64_t seq, int64_t off, int64_t n)
{
    int rc = seq > 2 ? wait_all(s, C_CONSUMED, seq - 2) : HERD_OK;
    if (rc != HERD_OK)
        return rc;
    char *mine = buffer(s, s->me, seq);
    for (int q = 0; q < s->nranks; q++) {
        int64_t st = 0, len = share_len(c, q, n, &st);
        /* My own share is read where it lies, unless it must be prescaled first. */
        if (len > 0 && (q != s->me || c->scale->pre != 1.0))
            seg_put(s, c->dtype, mine + st * (int64_t)c->esize,
                    c->send + (off + st) * (int64_t)c->esize, (size_t)len, c->esize,
                    c->scale->pre);
    }
    publish(s, C_READY, seq);
    return HERD_OK;
}

static int reduce_share(herd_shm_t *s, const call_t *c, uint64_t seq, int64_t off, int64_t n)
{
    int64_t st = 0, len = share_len(c, s->me, n, &st);
    if (len > 0) {
        int rc = wait_all(s, C_READY, seq);
        if (rc != HERD_OK)
            return rc;
        size_t at = (size_t)st * c->esize;
        char *mine = buffer(s, s->me, seq) + at;
        char *dst = c->recv + (size_t)(off + st) * c->esize;
        const char *own = c->scale->pre != 1.0 ? mine : c->send + (size_t)(off + st) * c->esize;
        const char *x = own;
        int last = s->me == s->nranks - 1 ? s->nranks - 2 : s->nranks - 1;
        for (int q = 0; q < s->nranks; q++) {
            if (q == s->me)
                continue;
            const char *y = buffer(s, q, seq) + at;
            if (q == last && s->across == NULL) {
                /* The divisor is the same on every rank; postscale is each rank's own. */
                combine_last(c->dtype, c->op, dst, mine, x, y, (size_t)len,
                             c->scale->divisor, s->stream);
                x = NULL;
                break;
            }
            combine(c->dtype, c->op, dst, x, y, (size_t)len);
            x = dst;
        }
        if (x != NULL) { /* one rank alone, or across hosts: the steps one by one */
            if (x != dst)
                memcpy(dst, x, (size_t)len * c->esize);
            if (s->across != NULL) {
                /* Time on the network is no store's doing: counted as waiting. */
                int64_t t0 = s->measuring ? herd__clock_ns() : 0;
                rc = s->across(s->across_ctx, dst, len, c->dtype, c->op);
                if (s->measuring)
                    s->waited_ns += herd__clock_ns() - t0;
                if (rc != HERD_OK)
                    return broken(s, rc);
            }
            herd__dtype_finish(c->dtype, dst, (size_t)len, c->scale->divisor, 1.0);
            seg_copy(s->stream, mine, dst, (size_t)len * c->esize);
        }
        if (c->scale->post != 1.0)
            herd__dtype_scale_copy(c->dtype, dst, dst, (size_t)len, c->scale->post);
    }
    publish(s, C_REDUCED, seq);
    return HERD_OK;
}

static int copy_out(herd_shm_t *s, const call_t *c, uint64_t seq, int64_t off, int64_t n)
{
    for (int i = 1; i < s->nranks; i++) {
        int q = (s->me + i) % s->nranks;
        int64_t st = 0, len = share_len(c, q, n, &st);
        if (len == 0)
            continue;
        int rc = wait_for(s, q, C_REDUCED, seq);
        if (rc != HERD_OK)
            return rc;
        put(c->dtype, c->recv + (size_t)(off + st) * c->esize,
            buffer(s, q, seq) + (size_t)st * c->esize, (size_t)len, c->esize, c->scale->post);
    }
    publish(s, C_CONSUMED, seq);
    return HERD_OK;
}

/* An allreduce too large for small_allreduce: chunks as large as the buffers allow, of equal
 * size, cut into shares of whole lines. */
static int chunked_allreduce(herd_shm_t *s, call_t c, int64_t count)
{
    int64_t per_line = LINE / (int64_t)c.esize;
    int64_t max_share = (int64_t)(s->buf_bytes / (size_t)s->nranks / LINE) * per_line;
    int64_t max_chunk = max_share * s->nranks;
    int64_t nchunks = (count + max_chunk - 1) / max_chunk;
    int64_t chunk = (count + nchunks - 1) / nchunks;
    int64_t share = (chunk + s->nranks - 1) / s->nranks;
    c.share = (share + per_line - 1) / per_line * per_line;
    uint64_t base = s->seq;
    s->seq += (uint64_t)nchunks;
    int rc = copy_in(s, &c, base + 1, 0, chunk < count ? chunk : count);
    for (int64_t i = 0; i < nchunks && rc == HERD_OK; i++) {
        int64_t off = i * chunk, n = count - off < chunk ? count - off : chunk;
        if (i + 1 < nchunks) {
            int64_t next = off + chunk;
            rc = copy_in(s, &c, base + 2 + (uint64_t)i, next,
                         count - next < chunk ? count - next : chunk);
        }
        if (rc == HERD_OK)
            rc = reduce_share(s, &c, base + 1 + (uint64_t)i, off, n);
        if (rc == HERD_OK)
            rc = copy_out(s, &c, base + 1 + (uint64_t)i, off, n);
    }
    return rc;
}

int herd__shm_allreduce(herd_shm_t *s, const void *send, void *recv, int64_t count, int dtype,
                        int op, const herd_scale_t *scale)
{
    int rc = usable(s, "allreduce");
    if (rc != HERD_OK || count <= 0)
        return rc;
    call_t c = {.send = send, .recv = recv, .dtype = dtype, .op = op,
                .esize = herd__dtype_size(dtype), .scale = scale};
    int64_t bytes = count * (int64_t)c.esize;
    if (bytes <= SMALL_BYTES || s->nranks == 1) {
        if ((size_t)bytes <= s->buf_bytes)
            return small_allreduce(s, &c, count);
    }
    int cls = store_class(s, bytes);
    if (cls < 0) {
        s->stream = s->stream_mode == 1;
        return chunked_allreduce(s, c, count);
    }
    s->stream = choose_way(s, cls);
    s->measuring = 1;
    s->waited_ns = 0;
    int64_t t0 = herd__clock_ns();
    rc = chunked_allreduce(s, c, count);
    int64_t work = herd__clock_ns() - t0 - s->waited_ns;
    s->measuring = 0;
    if (rc == HERD_OK)
        learn_way(s, cls, s->stream, (float)(work > 0 ? work : 1) / (float)bytes);
    return rc;
}

/* ---- the pipeline the chunked kinds share ---------------------------------------------------- */

typedef int (*stage_fn)(herd_shm_t *s, const void *arg, uint64_t seq, int64_t k);

/* Runs `nchunks` chunks, taking their numbers from `seq`: fill(k + 1) before drain(k), so that
 * the peers work on one chunk while this rank fills the next. */
static int pipeline(herd_shm_t *s, int64_t nchunks, stage_fn fill, stage_fn drain,
                    const void *arg)
{
    if (nchunks == 0)
        return HERD_OK;
    uint64_t base = s->seq;
    s->seq += (uint64_t)nchunks;
    int rc = fill(s, arg, base + 1, 0);
    for (int64_t k = 0; k < nchunks && rc == HERD_OK; k++) {
        if (k + 1 < nchunks)
            rc = fill(s, arg, base + 2 + (uint64_t)k, k + 1);
        if (rc == HERD_OK)
            rc = drain(s, arg, base + 1 + (uint64_t)k, k);
    }
    return rc;
}

/* ---- broadcast --------------------------------------------------------------------------- */

/* Bytes a rank writes into its buffer per chunk of a broadcast, allgather or reducescatter: at
 * most a buffer, and at most PIPE_BYTES, so that a chunk is still in cache when the others read
 * it and a reader starts on chunk i while the writer fills chunk i + 1 (measured: 256 KiB beat
 * whole 2 MiB buffers and 128 KiB, docs/shm.md). */
static int64_t pipe_bytes(const herd_shm_t *s)
{
    return (int64_t)(s->buf_bytes < PIPE_BYTES ? s->buf_bytes : PIPE_BYTES);
}

/* Waits until every peer has consumed the chunk that last used this buffer (seq - 2). */
static int buffer_free(herd_shm_t *s, uint64_t seq)
{
    return seq > 2 ? wait_all(s, C_CONSUMED, seq - 2) : HERD_OK;
}

int herd__shm_broadcast(herd_shm_t *s, void *buf, int64_t bytes, int root)
{
    int rc = usable(s, "broadcast");
    if (rc != HERD_OK || bytes <= 0)
        return rc;
    if (s->across != NULL || root < 0 || root >= s->nranks)
        return herd__status_set(HERD_ERR_INTERNAL,
                                "shared-memory broadcast: root %d of %d local ranks%s", root,
                                s->nranks, s->across != NULL ? " across hosts" : "");
    int64_t chunk = pipe_bytes(s);
    int64_t nchunks = (bytes + chunk - 1) / chunk;
    uint64_t base = s->seq;
    s->seq += (uint64_t)nchunks;
    for (int64_t i = 0; i < nchunks && rc == HERD_OK; i++) {
        uint64_t seq = base + 1 + (uint64_t)i;
        int64_t off = i * chunk, n = bytes - off < chunk ? bytes - off : chunk;
        if (s->me == root) {
            rc = buffer_free(s, seq);
            if (rc != HERD_OK)
                break;
            memcpy(buffer(s, root, seq), (char *)buf + off, (size_t)n);
            publish(s, C_READY, seq);
        } else {
            rc = wait_for(s, root, C_READY, seq);
            if (rc != HERD_OK)
                break;
            memcpy((char *)buf + off, buffer(s, root, seq), (size_t)n);
        }
        /* The root reads no buffer; it raises consumed all the same, as every rank does for
         * every chunk, so later chunks may reuse every buffer. */
        publish(s, C_CONSUMED, seq);
    }
    return rc;
}

/* ---- allgather ----------------------------------------------------------------------------- */

typedef struct gather {
    const char *send;
    char *recv;
    const int64_t *counts, *displs;
    size_t esize;
    int64_t chunk; /* bytes of each rank's part per chunk */
} gather_t;

/* Bytes of rank q's part in chunk k (possibly 0). */
static int64_t part_piece(const gather_t *g, int q, int64_t k)
{
    int64_t left = g->counts[q] * (int64_t)g->esize - k * g->chunk;
    return left <= 0 ? 0 : left < g->chunk ? left : g->chunk;
}

static int gather_in(herd_shm_t *s, const void *arg, uint64_t seq, int64_t k)
{
    const gather_t *g = arg;
    int64_t n = part_piece(g, s->me, k);
    if (n > 0) {
        int rc = buffer_free(s, seq);
        if (rc != HERD_OK)
            return rc;
        memcpy(buffer(s, s->me, seq), g->send + k * g->chunk, (size_t)n);
    }
    publish(s, C_READY, seq);
    return HERD_OK;
}

static int gather_out(herd_shm_t *s, const void *arg, uint64_t seq, int64_t k)
{
    const gather_t *g = arg;
    if (k == 0) {
        /* My own part goes straight from send to recv (nothing to do in place), while the
         * peers fill their buffers with their first chunks. */
        char *mine = g->recv + g->displs[s->me] * (int64_t)g->esize;
        if (g->counts[s->me] > 0 && mine != g->send)
            memcpy(mine, g->send, (size_t)g->counts[s->me] * g->esize);
    }
    for (int i = 1; i < s->nranks; i++) {
        int q = (s->me + i) % s->nranks;
        int64_t n = part_piece(g, q, k);
        if (n == 0)
            continue;
        int rc = wait_for(s, q, C_READY, seq);
        if (rc != HERD_OK)
            return rc;
        memcpy(g->recv + g->displs[q] * (int64_t)g->esize + k * g->chunk, buffer(s, q, seq),
               (size_t)n);
    }
    publish(s, C_CONSUMED, seq);
    return HERD_OK;
}

int herd__shm_allgather(herd_shm_t *s, const void *send, void *recv, const int64_t *counts,
                        const int64_t *displs, size_t esize)
{
    int rc = usable(s, "allgather");
    if (rc != HERD_OK)
        return rc;
    if (s->across != NULL)
        return herd__status_set(HERD_ERR_INTERNAL, "shared-memory allgather across hosts");
    gather_t g = {.send = send, .recv = recv, .counts = counts, .displs = displs,
                  .esize = esize, .chunk = pipe_bytes(s)};
    int64_t most = 0;
    for (int q = 0; q < s->nranks; q++)
        most = counts[q] > most ? counts[q] : most;
    int64_t nchunks = (most * (int64_t)esize + g.chunk - 1) / g.chunk;
    return pipeline(s, nchunks, gather_in, gather_out, &g);
}

/* ---- reducescatter ------------------------------------------------------------------------- */

typedef struct scatter {
    const char *send;
    char *recv;
    const int64_t *counts;
    int dtype, op;
    size_t esize;
    int64_t slot;  /* elements per rank's slot in a chunk: each rank's buffer holds nranks - 1 */
    int64_t first; /* my part's first element in send */
} scatter_t;

/* Elements of part q in chunk k (possibly 0). */
static int64_t slot_len(const scatter_t *c, int q, int64_t k)
{
    int64_t left = c->counts[q] - k * c->slot;
    return left <= 0 ? 0 : left < c->slot ? left : c->slot;
}

/* Where part q's chunk lies in rank r's buffer (r skips itself). */
static size_t slot_at(const scatter_t *c, int r, int q)
{
    return (size_t)(q < r ? q : q - 1) * (size_t)c->slot * c->esize;
}

/* Copies the chunk k of every part the other ranks reduce into my buffer. */
static int scatter_in(herd_shm_t *s, const void *arg, uint64_t seq, int64_t k)
{
    const scatter_t *c = arg;
    int rc = HERD_OK, waited = 0;
    int64_t at = 0; /* part q's first element in send */
    for (int q = 0; q < s->nranks; at += c->counts[q], q++) {
        int64_t n = slot_len(c, q, k);
        if (q == s->me || n == 0)
            continue;
        if (!waited && (rc = buffer_free(s, seq)) != HERD_OK)
            return rc;
        waited = 1;
        memcpy(buffer(s, s->me, seq) + slot_at(c, s->me, q),
               c->send + (size_t)(at + k * c->slot) * c->esize, (size_t)n * c->esize);
    }
    publish(s, C_READY, seq);
    return HERD_OK;
}

/* Rank q's contribution to my part's chunk k: my own input where it lies, or q's slot for me. */
static const char *contribution(const herd_shm_t *s, const scatter_t *c, uint64_t seq, int q,
                                int64_t k)
{
    if (q == s->me)
        return c->send + (size_t)(c->first + k * c->slot) * c->esize;
    return buffer(s, q, seq) + slot_at(c, q, s->me);
}

/* My part's chunk k: every rank's contribution, combined in rank order (as a small allreduce
 * does), straight into recv. */
static int scatter_reduce(herd_shm_t *s, const void *arg, uint64_t seq, int64_t k)
{
    const scatter_t *c = arg;
    int64_t n = slot_len(c, s->me, k);
    if (n > 0) {
        int rc = wait_all(s, C_READY, seq);
        if (rc != HERD_OK)
            return rc;
        char *dst = c->recv + (size_t)(k * c->slot) * c->esize;
        if (s->nranks == 1)
            memcpy(dst, contribution(s, c, seq, 0, k), (size_t)n * c->esize);
        else
            combine(c->dtype, c->op, dst, contribution(s, c, seq, 0, k),
                    contribution(s, c, seq, 1, k), (size_t)n);
        for (int q = 2; q < s->nranks; q++)
            combine(c->dtype, c->op, dst, dst, contribution(s, c, seq, q, k), (size_t)n);
    }
    publish(s, C_CONSUMED, seq);
    return HERD_OK;
}

int herd__shm_reducescatter(herd_shm_t *s, const void *send, void *recv, const int64_t *counts,
                            int dtype, int op)
{
    int rc = usable(s, "reducescatter");
    if (rc != HERD_OK)
        return rc;
    if (s->across != NULL)
        return herd__status_set(HERD_ERR_INTERNAL, "shared-memory reducescatter across hosts");
    scatter_t c = {.send = send, .recv = recv, .counts = counts, .dtype = dtype, .op = op,
                   .esize = herd__dtype_size(dtype)};
    int64_t most = 0;
    for (int q = 0; q < s->nranks; q++) {
        most = counts[q] > most ? counts[q] : most;
        c.first += q < s->me ? counts[q] : 0;
    }
    /* Slots of whole lines, nranks - 1 of them in a pipeline chunk (with hundreds of local
     * ranks, slots of whole elements; a buffer too small for one element each is refused, by
     * every rank alike, before any chunk is counted). */
    int64_t slots = s->nranks > 1 ? s->nranks - 1 : 1;
    int64_t slot_bytes = pipe_bytes(s) / slots & ~(int64_t)(LINE - 1);
    if (slot_bytes == 0)
        slot_bytes = (int64_t)s->buf_bytes / slots;
    c.slot = slot_bytes / (int64_t)c.esize;
    if (c.slot == 0)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                "shared-memory reducescatter: %zu-byte buffers cannot hold one "
                                "%s element for each of %d local ranks (HERD_SHM_BYTES)",
                                s->buf_bytes, herd__dtype_name(dtype), s->nranks);
    return pipeline(s, (most + c.slot - 1) / c.slot, scatter_in, scatter_reduce, &c);
}

int herd__shm_attach(herd_shm_t **out, const herd_shm_params_t *p)
{
    if (p->nranks < 1 || p->me < 0 || p->me >= p->nranks || p->region_bytes < HERD_SHM_MIN_REGION)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "shared-memory plane: %d ranks, rank %d, %zu-byte regions "
                                "(at least %d)",
                                p->nranks, p->me, p->region_bytes, (int)HERD_SHM_MIN_REGION);
    herd_shm_t *s = calloc(1, sizeof *s);
    char **regions = calloc((size_t)p->nranks, sizeof *regions);
    if (s == NULL || regions == NULL) {
        free(s);
        free(regions);
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the shared-memory plane");
    }
    for (int r = 0; r < p->nranks; r++)
        regions[r] = p->regions[r];
    s->nranks = p->nranks;
    s->me = p->me;
    s->regions = regions;
    s->buf_bytes = ((p->region_bytes - CTRL_BYTES) / 2) & ~(size_t)(LINE - 1);
    s->timeout_ns = p->timeout_ms * 1000000;
    s->across = p->across;
    s->across_ctx = p->across_ctx;
    s->stream_mode = HAVE_STREAM ? p->stream_stores : 0;
    for (int w = C_READY; w <= C_CONSUMED; w++)
        atomic_store_explicit(counter(s, s->me, w), 0, memory_order_relaxed);
    for (int k = 0; k < STORE_CLASSES; k++)
        for (int w = 0; w < 2; w++)
            atomic_store_explicit(cost_of(s, s->me, k, w), 0, memory_order_relaxed);
    atomic_store_explicit(pid_of(s, s->me), (int)getpid(), memory_order_release);
    *out = s;
    return HERD_OK;
}

void herd__shm_detach(herd_shm_t *s)
{
    if (s == NULL)
        return;
    free(s->regions);
    free(s);
}
