/* test_shm.c - the shared-memory plane (backend/shm.c) without MPI: 1-4 forked processes share
 * an anonymous mapping as the segment. Every op x dtype, counts around the whole-tensor limit,
 * the chunk and share boundaries, in place and out of place, with and without pre/postscale and
 * a divisor; each result is compared element by element with the exact value (inputs are small
 * integers, so sums and products are exact in every dtype and the order of combination does not
 * matter). Broadcast, allgather(v) and reducescatter the same way, and every kind after every
 * other. Then the failures: a peer that exits, and one that never comes (timeout). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/shm.h"
#include "dtype.h"
#include "status.h"
#include "unit.h"

enum { MAX_RANKS = 4, SMALL_REGION = HERD_SHM_MIN_REGION };

typedef int (*rank_fn)(herd_shm_t *s, int rank, int nranks, void *arg);

/* Runs fn on `nranks` forked processes over one shared mapping; returns the summed failures
 * (the children's exit statuses; a child killed by a signal counts 100). */
static int (*run_across)(void *ctx, void *buf, int64_t count, int dtype, int op);
/* Each rank's HERD_SHM_STREAM_STORES (2, the default: measure and choose). */
static int run_stream[MAX_RANKS] = {2, 2, 2, 2};

static int run_ranks(int nranks, size_t region, int64_t timeout_ms, rank_fn fn, void *arg)
{
    char *seg = mmap(NULL, region * (size_t)nranks, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (seg == MAP_FAILED) {
        UNIT_FAIL("mmap: %s", strerror(errno));
        return 1;
    }
    void *regions[MAX_RANKS];
    for (int r = 0; r < nranks; r++)
        regions[r] = seg + region * (size_t)r;
    fflush(NULL);
    for (int r = 0; r < nranks; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            herd_shm_t *s = NULL;
            herd_shm_params_t p = {.nranks = nranks, .me = r, .regions = regions,
                                   .region_bytes = region, .timeout_ms = timeout_ms,
                                   .across = run_across, .stream_stores = run_stream[r]};
            int failures = herd__shm_attach(&s, &p) == HERD_OK ? fn(s, r, nranks, arg) : 1;
            herd__shm_detach(s);
            fflush(NULL);
            _exit(failures > 99 ? 99 : failures);
        }
    }
    int failures = 0, st = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &st, 0)) > 0)
        failures += WIFEXITED(st) ? WEXITSTATUS(st) : 100;
    munmap(seg, region * (size_t)nranks);
    return failures;
}

/* ---- exact values ---------------------------------------------------------------------- */

static int is_float(int dtype)
{
    return dtype == HERD_FLOAT16 || dtype == HERD_BFLOAT16 || dtype == HERD_FLOAT32 ||
           dtype == HERD_FLOAT64;
}

/* Rank r's input at i: small integers (positive for uint8), in {1, 2} (or -1) for products;
 * 4 ranks' prescaled sums stay inside int8 and uint8. */
static int64_t value(int dtype, int op, int r, int64_t i)
{
    uint64_t h = (uint64_t)(i * 2654435761u) ^ (uint64_t)(r * 40503u);
    h ^= h >> 13;
    if (op == HERD_PRODUCT && (dtype == HERD_UINT8 || h % 5 != 0))
        return (int64_t)(1 + h % 2);
    if (op == HERD_PRODUCT)
        return -1;
    if (dtype == HERD_UINT8)
        return (int64_t)(h % 30);
    return (int64_t)(h % 31) - 15;
}

static void put(int dtype, void *buf, int64_t i, double v)
{
    switch (dtype) {
    case HERD_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    case HERD_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
    case HERD_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case HERD_INT64: ((int64_t *)buf)[i] = (int64_t)v; break;
    case HERD_FLOAT16: ((uint16_t *)buf)[i] = herd__float_to_fp16((float)v); break;
    case HERD_BFLOAT16: ((uint16_t *)buf)[i] = herd__float_to_bf16((float)v); break;
    case HERD_FLOAT32: ((float *)buf)[i] = (float)v; break;
    default: ((double *)buf)[i] = v; break;
    }
}

static double combine(int op, double a, double b)
{
    switch (op) {
    case HERD_MIN: return b < a ? b : a;
    case HERD_MAX: return b > a ? b : a;
    case HERD_PRODUCT: return a * b;
    default: return a + b;
    }
}

typedef struct cases {
    const int64_t *counts;
    int ncounts;
    int scaled; /* 0: plain; 1: prescale 2, postscale 0.5 and average's divisor */
} cases_t;

/* One allreduce on this rank: fills the input, runs, compares with the exact expectation. */
static int check_one(herd_shm_t *s, int rank, int nranks, int dtype, int op, int64_t count,
                     int in_place, int scaled)
{
    size_t esize = herd__dtype_size(dtype);
    size_t bytes = (size_t)(count > 0 ? count : 1) * esize;
    char *send = malloc(bytes), *recv = in_place ? send : malloc(bytes), *want = malloc(bytes);
    herd_scale_t sc = {.pre = 1.0, .post = 1.0, .divisor = 1};
    int real_op = op;
    if (op == HERD_AVERAGE) {
        real_op = HERD_SUM;
        sc.divisor = nranks;
    }
    /* Integer prescale would not be exact for negative products of 2: scale sums only. */
    if (scaled && (real_op == HERD_SUM || is_float(dtype))) {
        sc.pre = 2.0;
        sc.post = 0.5;
    }
    for (int64_t i = 0; i < count; i++) {
        put(dtype, send, i, (double)value(dtype, op, rank, i));
        if (!in_place)
            put(dtype, recv, i, 77);
        double acc = 0;
        for (int r = 0; r < nranks; r++) {
            double v = (double)value(dtype, op, r, i) * sc.pre;
            acc = r == 0 ? v : combine(real_op, acc, v);
        }
        put(dtype, want, i, acc);
    }
    herd__dtype_finish(dtype, want, (size_t)count, sc.divisor, sc.post);
    int rc = herd__shm_allreduce(s, send, recv, count, dtype, real_op, &sc);
    int failures = 0;
    if (rc != HERD_OK) {
        fprintf(stderr, "rank %d: %s %s n=%lld: status %d: %s\n", rank, herd__dtype_name(dtype),
                herd__op_name(op), (long long)count, rc, herd__status_last());
        failures++;
    } else if (count > 0 && memcmp(recv, want, (size_t)count * esize) != 0) {
        int64_t bad = 0;
        for (int64_t i = 0; i < count; i++)
            if (memcmp(recv + i * (int64_t)esize, want + i * (int64_t)esize, esize) != 0 &&
                bad++ == 0)
                fprintf(stderr, "rank %d of %d: %s %s n=%lld %s%s: element %lld differs\n", rank,
                        nranks, herd__dtype_name(dtype), herd__op_name(op), (long long)count,
                        in_place ? "in place" : "out of place", scaled ? " scaled" : "",
                        (long long)i);
        failures++;
    }
    free(send);
    if (!in_place)
        free(recv);
    free(want);
    return failures;
}

static int every_case(herd_shm_t *s, int rank, int nranks, void *arg)
{
    const cases_t *c = arg;
    int failures = 0;
    for (int dtype = 0; dtype < HERD_NUM_DTYPES; dtype++)
        for (int op = 0; op < HERD_NUM_OPS; op++)
            for (int k = 0; k < c->ncounts; k++)
                for (int in_place = 0; in_place < 2; in_place++)
                    failures += check_one(s, rank, nranks, dtype, op, c->counts[k], in_place,
                                          c->scaled);
    return failures;
}

/* Counts around the limits of a 16 KiB region: buffers of 7936 bytes, shares of whole lines,
 * so a 4-rank float32 chunk holds at most 1984 elements; whole-tensor reduction up to the
 * buffer. */
static const int64_t small_region_counts[] = {0,    1,    2,    63,   64,   65,   991,  992,
                                              993,  1983, 1984, 1985, 3968, 3969, 7935, 7936,
                                              7937, 9000, 20011};

static void test_every_op_dtype_small_region(void)
{
    cases_t c = {small_region_counts, (int)(sizeof small_region_counts / sizeof(int64_t)), 0};
    for (int n = 1; n <= MAX_RANKS; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, every_case, &c), 0);
}

static void test_scaled_small_region(void)
{
    cases_t c = {small_region_counts, (int)(sizeof small_region_counts / sizeof(int64_t)), 1};
    for (int n = 2; n <= MAX_RANKS; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, every_case, &c), 0);
}

/* The default 4 MiB region: whole-tensor reduction, one chunk, several chunks. */
static void test_default_region(void)
{
    static const int64_t counts[] = {4097, 600001, 1, 300001};
    cases_t c = {counts, 2, 0};
    UNIT_EQ_INT(run_ranks(2, 4 << 20, 60000, every_case, &c), 0);
    c.counts = counts + 2;
    c.scaled = 1;
    UNIT_EQ_INT(run_ranks(3, 4 << 20, 60000, every_case, &c), 0);
}

/* Streaming stores into the segment give the same bits as regular ones: every op and dtype
 * with every chunked allreduce streaming (1), then ranks storing differently from each other. */
static void test_streaming_stores(void)
{
    cases_t c = {small_region_counts, (int)(sizeof small_region_counts / sizeof(int64_t)), 0};
    for (int r = 0; r < MAX_RANKS; r++)
        run_stream[r] = 1;
    for (int n = 1; n <= MAX_RANKS; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, every_case, &c), 0);
    c.scaled = 1;
    UNIT_EQ_INT(run_ranks(3, SMALL_REGION, 60000, every_case, &c), 0);
    static const int64_t large[] = {600001, 300001};
    cases_t big = {large, 2, 0};
    UNIT_EQ_INT(run_ranks(2, 4 << 20, 60000, every_case, &big), 0);
    run_stream[0] = 0;
    run_stream[2] = 0;
    c.scaled = 0;
    UNIT_EQ_INT(run_ranks(4, SMALL_REGION, 60000, every_case, &c), 0);
    for (int r = 0; r < MAX_RANKS; r++)
        run_stream[r] = 2;
}

/* Measuring and choosing (2): a run of allreduces in one size class tries both ways, then the
 * cheaper with the other now and then; every result stays exact, for every class's first
 * calls, across the switches, in place and not, with an average's divisor. */
static int many_same_size(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)arg;
    int failures = 0;
    for (int k = 0; k < 80; k++)
        failures += check_one(s, rank, nranks, k % 3 == 0 ? HERD_FLOAT64 : HERD_FLOAT32,
                              k % 5 == 0 ? HERD_MAX : HERD_AVERAGE, k % 2 ? 70001 : 131072,
                              k % 4 == 0, 0);
    return failures;
}

static void test_streaming_chosen_by_measuring(void)
{
    UNIT_EQ_INT(run_ranks(2, 4 << 20, 60000, many_same_size, NULL), 0);
    UNIT_EQ_INT(run_ranks(3, 1 << 20, 60000, many_same_size, NULL), 0);
    /* A rank whose way is fixed beside ranks that measure. */
    run_stream[1] = 1;
    UNIT_EQ_INT(run_ranks(3, 1 << 20, 60000, many_same_size, NULL), 0);
    run_stream[1] = 2;
}

/* The hierarchical step: a stand-in for "another host with the same data", which doubles a sum
 * (float32 only: the tensor this test reduces). */
static int calls_across;
static int double_it(void *ctx, void *buf, int64_t count, int dtype, int op)
{
    (void)ctx;
    if (dtype != HERD_FLOAT32 || op != HERD_SUM)
        return herd__status_set(HERD_ERR_INTERNAL, "unexpected dtype or op");
    for (int64_t i = 0; i < count; i++)
        ((float *)buf)[i] *= 2.0f;
    calls_across++;
    return HERD_OK;
}

static int across_sum(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)arg;
    static const int64_t counts[] = {1, 1000, 1985, 20011};
    int failures = 0;
    for (int k = 0; k < 4; k++) {
        int64_t n = counts[k];
        float *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)(value(HERD_FLOAT32, HERD_SUM, rank, i));
        /* Average over 2 "hosts": the divisor is every rank's count. */
        herd_scale_t sc = {1.0, 1.0, 2 * nranks};
        int rc = herd__shm_allreduce(s, x, x, n, HERD_FLOAT32, HERD_SUM, &sc);
        failures += rc != HERD_OK;
        for (int64_t i = 0; i < n; i++) {
            float sum = 0;
            for (int r = 0; r < nranks; r++)
                sum += (float)value(HERD_FLOAT32, HERD_SUM, r, i);
            if (x[i] != 2.0f * sum / (float)(2 * nranks) && failures++ < 3)
                fprintf(stderr, "across: n=%lld element %lld: %g\n", (long long)n,
                        (long long)i, (double)x[i]);
        }
        free(x);
    }
    return failures + (calls_across == 0);
}

static void test_across_hosts_hook(void)
{
    run_across = double_it;
    for (int n = 2; n <= 3; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, across_sum, NULL), 0);
    /* The same with the reduced shares streamed into the segment. */
    for (int r = 0; r < MAX_RANKS; r++)
        run_stream[r] = 1;
    UNIT_EQ_INT(run_ranks(2, SMALL_REGION, 60000, across_sum, NULL), 0);
    for (int r = 0; r < MAX_RANKS; r++)
        run_stream[r] = 2;
    run_across = NULL;
}

/* ---- broadcast, allgather, reducescatter ------------------------------------------------------
 * A 16 KiB region has buffers of 7936 bytes: broadcast and allgather move up to that many bytes
 * of a part per chunk, reducescatter nranks - 1 slots of whole lines (2 ranks: 1984 float32,
 * 3: 992, 4: 656). The sizes below sit on and around those boundaries. */

/* Byte i of a broadcast from `root` (never 0xee, the receivers' fill). */
static unsigned char bcast_byte(int root, int64_t i)
{
    return (unsigned char)((uint64_t)(i * 2654435761u + (uint64_t)root * 977u) % 239u);
}

static int check_broadcast(herd_shm_t *s, int rank, int nranks, int root, int64_t bytes)
{
    unsigned char *buf = malloc((size_t)(bytes > 0 ? bytes : 1));
    for (int64_t i = 0; i < bytes; i++)
        buf[i] = rank == root ? bcast_byte(root, i) : 0xee;
    int rc = herd__shm_broadcast(s, buf, bytes, root);
    int failures = rc != HERD_OK;
    if (rc != HERD_OK)
        fprintf(stderr, "rank %d: broadcast from %d, %lld bytes: status %d: %s\n", rank, root,
                (long long)bytes, rc, herd__status_last());
    for (int64_t i = 0; i < bytes && rc == HERD_OK; i++) {
        if (buf[i] != bcast_byte(root, i)) {
            fprintf(stderr, "rank %d of %d: broadcast from %d, %lld bytes: byte %lld is %d\n",
                    rank, nranks, root, (long long)bytes, (long long)i, buf[i]);
            failures++;
            break;
        }
    }
    free(buf);
    return failures;
}

static const int64_t bcast_sizes[] = {0,     1,     2,     63,    64,    65,   7935,
                                      7936,  7937,  15871, 15872, 15873, 23809, 100003};

static int every_broadcast(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)arg;
    int failures = 0;
    for (int root = 0; root < nranks; root++)
        for (size_t k = 0; k < sizeof bcast_sizes / sizeof bcast_sizes[0]; k++)
            failures += check_broadcast(s, rank, nranks, root, bcast_sizes[k]);
    return failures;
}

static void test_broadcast_every_root(void)
{
    for (int n = 1; n <= MAX_RANKS; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, every_broadcast, NULL), 0);
}

/* Element i of rank r's allgather part, as bytes: (r, i) spread over the element's bytes. */
static unsigned char gather_byte(int r, int64_t i)
{
    return (unsigned char)(1 + ((uint64_t)i * 40503u + (uint64_t)r * 131u) % 251u);
}

/* One allgather: parts counts[q] elements of esize bytes at displs[q] (gaps between parts must
 * stay untouched); in place when asked. */
static int check_allgather(herd_shm_t *s, int rank, int nranks, const int64_t *counts,
                           const int64_t *displs, size_t esize, int in_place)
{
    int64_t end = 0;
    for (int q = 0; q < nranks; q++)
        end = displs[q] + counts[q] > end ? displs[q] + counts[q] : end;
    size_t bytes = (size_t)end * esize, mine = (size_t)counts[rank] * esize;
    unsigned char *recv = malloc(bytes + 1), *send = malloc(mine + 1);
    memset(recv, 0xee, bytes + 1);
    unsigned char *from = in_place ? recv + displs[rank] * (int64_t)esize : send;
    for (size_t b = 0; b < mine; b++)
        from[b] = gather_byte(rank, (int64_t)b);
    int rc = herd__shm_allgather(s, from, recv, counts, displs, esize);
    int failures = rc != HERD_OK;
    if (rc != HERD_OK)
        fprintf(stderr, "rank %d: allgather: status %d: %s\n", rank, rc, herd__status_last());
    for (size_t b = 0; b < bytes && rc == HERD_OK; b++) {
        int owner = -1;
        for (int q = 0; q < nranks; q++)
            if ((int64_t)b >= displs[q] * (int64_t)esize &&
                (int64_t)b < (displs[q] + counts[q]) * (int64_t)esize)
                owner = q;
        unsigned char want =
            owner < 0 ? 0xee
                      : gather_byte(owner, (int64_t)b - displs[owner] * (int64_t)esize);
        if (recv[b] != want) {
            fprintf(stderr,
                    "rank %d of %d: allgather (esize %zu%s, my part %lld): byte %zu (rank %d's) "
                    "is %d, expected %d\n",
                    rank, nranks, esize, in_place ? ", in place" : "", (long long)counts[rank],
                    b, owner, recv[b], want);
            failures++;
            break;
        }
    }
    free(recv);
    free(send);
    return failures;
}

/* Parts per rank for case k: equal (around the chunk), unequal, some or all empty. */
static const int64_t gather_parts[] = {0, 1, 5, 63, 64, 65, 1983, 1984, 1985, 3969, 7937, 20011};
enum { NPARTS = sizeof gather_parts / sizeof gather_parts[0] };

static int every_allgather(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)arg;
    static const size_t esizes[] = {1, 2, 4, 8};
    int64_t counts[MAX_RANKS], displs[MAX_RANKS];
    int failures = 0;
    for (int e = 0; e < 4; e++) {
        for (int k = 0; k < NPARTS; k++) {
            for (int shape = 0; shape < 3; shape++) {
                int64_t at = 0;
                for (int q = 0; q < nranks; q++) {
                    /* 0: equal parts; 1: rotating unequal parts; 2: rank 1 empty, gaps. */
                    counts[q] = shape == 0   ? gather_parts[k]
                                : shape == 1 ? gather_parts[(k + 5 * q) % NPARTS]
                                : q == 1     ? 0
                                             : gather_parts[(k + q) % NPARTS];
                    displs[q] = at;
                    at += counts[q] + (shape == 2 ? 3 : 0);
                }
                for (int in_place = 0; in_place < 2; in_place++)
                    failures += check_allgather(s, rank, nranks, counts, displs, esizes[e],
                                                in_place);
            }
        }
    }
    return failures;
}

static void test_allgather_equal_unequal_in_place(void)
{
    for (int n = 1; n <= MAX_RANKS; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, every_allgather, NULL), 0);
}

/* One reducescatter: rank r's send holds value(dtype, op, r, i) at every i; part q is counts[q]
 * elements in rank order. AVERAGE reduces as SUM (the caller divides). */
static int check_reducescatter(herd_shm_t *s, int rank, int nranks, int dtype, int op,
                               const int64_t *counts)
{
    size_t esize = herd__dtype_size(dtype);
    int64_t total = 0, first = 0;
    for (int q = 0; q < nranks; q++) {
        first += q < rank ? counts[q] : 0;
        total += counts[q];
    }
    int64_t n = counts[rank];
    char *send = malloc((size_t)(total + 1) * esize), *recv = malloc((size_t)(n + 1) * esize);
    char *want = malloc((size_t)(n + 1) * esize);
    int real_op = op == HERD_AVERAGE ? HERD_SUM : op;
    for (int64_t i = 0; i < total; i++)
        put(dtype, send, i, (double)value(dtype, op, rank, i));
    for (int64_t j = 0; j <= n; j++)
        put(dtype, recv, j, 77); /* one past the end: must stay */
    for (int64_t j = 0; j < n; j++) {
        double acc = 0;
        for (int r = 0; r < nranks; r++) {
            double v = (double)value(dtype, op, r, first + j);
            acc = r == 0 ? v : combine(real_op, acc, v);
        }
        put(dtype, want, j, acc);
    }
    put(dtype, want, n, 77);
    int rc = herd__shm_reducescatter(s, send, recv, counts, dtype, op);
    int failures = 0;
    if (rc != HERD_OK) {
        fprintf(stderr, "rank %d: reducescatter %s %s: status %d: %s\n", rank,
                herd__dtype_name(dtype), herd__op_name(op), rc, herd__status_last());
        failures++;
    } else {
        for (int64_t j = 0; j <= n; j++) {
            if (memcmp(recv + j * (int64_t)esize, want + j * (int64_t)esize, esize) != 0) {
                fprintf(stderr,
                        "rank %d of %d: reducescatter %s %s, my part %lld of %lld: element %lld "
                        "differs\n",
                        rank, nranks, herd__dtype_name(dtype), herd__op_name(op), (long long)n,
                        (long long)total, (long long)j);
                failures++;
                break;
            }
        }
    }
    free(send);
    free(recv);
    free(want);
    return failures;
}

/* Parts around the slot sizes of every dtype and rank count (float32: 656, 992, 1984; 1-byte
 * types: 2624, 3968, 7936), rotated over the ranks; some empty, all empty. */
static const int64_t rs_parts[] = {1, 0, 655, 656, 657, 991, 992, 993, 1983, 1984,
                                   1985, 2625, 3969, 7937, 15873, 0, 64, 20011};
enum { NRS = sizeof rs_parts / sizeof rs_parts[0] };

static int every_reducescatter(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)arg;
    int64_t counts[MAX_RANKS];
    int failures = 0;
    for (int dtype = 0; dtype < HERD_NUM_DTYPES; dtype++) {
        for (int op = 0; op < HERD_NUM_OPS; op++) {
            for (int k = 0; k < NRS + 1; k++) {
                for (int q = 0; q < nranks; q++)
                    counts[q] = k == NRS ? 0 : rs_parts[(k + 7 * q) % NRS];
                failures += check_reducescatter(s, rank, nranks, dtype, op, counts);
            }
        }
    }
    return failures;
}

static void test_reducescatter_every_op_dtype(void)
{
    for (int n = 1; n <= MAX_RANKS; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, every_reducescatter, NULL), 0);
}

/* Every kind after every other on one plane, with odd chunk counts (so each kind starts on
 * either buffer) and one rank late now and then: the buffers and counters are shared by all
 * kinds, and a rank that runs ahead must never overwrite what a peer still reads. */
static int mixed_kinds(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)arg;
    int failures = 0;
    unit_rng_t rng = {0x5eedu};
    for (int step = 0; step < 48; step++) {
        uint64_t draw = unit_rng_next(&rng); /* the same on every rank */
        if ((int)(draw % 7) == rank)
            unit_sleep_ms(2);
        int64_t counts[MAX_RANKS], displs[MAX_RANKS], at = 0;
        for (int q = 0; q < nranks; q++) {
            counts[q] = (int64_t)((draw >> (8 * q)) % 5000);
            displs[q] = at;
            at += counts[q];
        }
        switch (step % 4) {
        case 0:
            failures += check_one(s, rank, nranks, HERD_FLOAT32, HERD_SUM,
                                  1 + (int64_t)(draw % 9000), (int)(draw >> 40) & 1, 0);
            break;
        case 1:
            failures += check_broadcast(s, rank, nranks, (int)((draw >> 32) % (uint64_t)nranks),
                                        (int64_t)(draw % 30000));
            break;
        case 2:
            failures += check_allgather(s, rank, nranks, counts, displs, 4, 0);
            break;
        default:
            failures += check_reducescatter(s, rank, nranks, HERD_INT32, HERD_SUM, counts);
            break;
        }
    }
    return failures;
}

static void test_mixed_kinds(void)
{
    for (int n = 2; n <= MAX_RANKS; n++)
        UNIT_EQ_INT(run_ranks(n, SMALL_REGION, 60000, mixed_kinds, NULL), 0);
}

/* ---- failures ------------------------------------------------------------------------------ */

/* Rank 1 attaches and exits at once; rank 0 must fail with BACKEND naming it, then refuse. */
static int dead_peer(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)nranks;
    (void)arg;
    if (rank == 1)
        return 0;
    float x[4096] = {0};
    herd_scale_t sc = {1.0, 1.0, 1};
    int64_t t0 = unit_now_ms();
    int rc = herd__shm_allreduce(s, x, x, 4096, HERD_FLOAT32, HERD_SUM, &sc);
    int failures = rc != HERD_ERR_BACKEND || strstr(herd__status_last(), "has exited") == NULL;
    failures += unit_now_ms() - t0 > 5000;
    rc = herd__shm_allreduce(s, x, x, 1, HERD_FLOAT32, HERD_SUM, &sc);
    failures += rc != HERD_ERR_BACKEND || strstr(herd__status_last(), "failed earlier") == NULL;
    if (failures)
        fprintf(stderr, "dead peer: status %d, '%s'\n", rc, herd__status_last());
    return failures;
}

static void test_dead_peer_fails_fast(void)
{
    UNIT_EQ_INT(run_ranks(2, SMALL_REGION, 0, dead_peer, NULL), 0);
}

/* Rank 1 lives but never comes: rank 0 times out after the timeout (300 ms here). */
static int absent_peer(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)nranks;
    (void)arg;
    if (rank == 1) {
        unit_sleep_ms(1500);
        return 0;
    }
    double x[100] = {0};
    herd_scale_t sc = {1.0, 1.0, 1};
    int64_t t0 = unit_now_ms();
    int rc = herd__shm_allreduce(s, x, x, 100, HERD_FLOAT64, HERD_MAX, &sc);
    int64_t took = unit_now_ms() - t0;
    int failures = rc != HERD_ERR_TIMEOUT || strstr(herd__status_last(), "local rank 1") == NULL;
    failures += took < 300 || took > 1400;
    if (failures)
        fprintf(stderr, "absent peer: status %d after %lld ms, '%s'\n", rc, (long long)took,
                herd__status_last());
    return failures;
}

static void test_absent_peer_times_out(void)
{
    UNIT_EQ_INT(run_ranks(2, SMALL_REGION, 300, absent_peer, NULL), 0);
}

/* The other kinds: rank 1 attaches and exits at once; rank 0's broadcast (from rank 1),
 * allgather or reducescatter fails with BACKEND naming the kind and the rank, then every later
 * call is refused. */
static int dead_peer_kind(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)nranks;
    int kind = *(const int *)arg;
    if (rank == 1)
        return 0;
    static const char *names[] = {"shared-memory broadcast: local rank 1",
                                  "shared-memory allgather: local rank 1",
                                  "shared-memory reducescatter: local rank 1"};
    int32_t x[4096] = {0}, y[8192] = {0};
    int64_t counts[2] = {4096, 4096}, displs[2] = {0, 4096};
    int64_t t0 = unit_now_ms();
    int rc = kind == 0   ? herd__shm_broadcast(s, x, sizeof x, 1)
             : kind == 1 ? herd__shm_allgather(s, x, y, counts, displs, sizeof x[0])
                         : herd__shm_reducescatter(s, y, x, counts, HERD_INT32, HERD_SUM);
    int failures = rc != HERD_ERR_BACKEND || strstr(herd__status_last(), names[kind]) == NULL ||
                   strstr(herd__status_last(), "has exited") == NULL;
    failures += unit_now_ms() - t0 > 5000;
    if (failures)
        fprintf(stderr, "dead peer (kind %d): status %d, '%s'\n", kind, rc, herd__status_last());
    rc = herd__shm_broadcast(s, x, 4, 0);
    failures += rc != HERD_ERR_BACKEND || strstr(herd__status_last(), "failed earlier") == NULL;
    rc = herd__shm_allgather(s, x, y, counts, displs, sizeof x[0]);
    failures += rc != HERD_ERR_BACKEND || strstr(herd__status_last(), "failed earlier") == NULL;
    rc = herd__shm_reducescatter(s, y, x, counts, HERD_INT32, HERD_SUM);
    failures += rc != HERD_ERR_BACKEND || strstr(herd__status_last(), "failed earlier") == NULL;
    return failures;
}

static void test_dead_peer_other_kinds(void)
{
    for (int kind = 0; kind < 3; kind++)
        UNIT_EQ_INT(run_ranks(2, SMALL_REGION, 0, dead_peer_kind, &kind), 0);
}

/* Rank 1 lives but never comes to an allgather, then to a broadcast it roots: rank 0 times
 * out after 300 ms, naming the kind. */
static int absent_peer_allgather(herd_shm_t *s, int rank, int nranks, void *arg)
{
    (void)nranks;
    (void)arg;
    if (rank == 1) {
        unit_sleep_ms(1500);
        return 0;
    }
    double x[100] = {0}, y[200];
    int64_t counts[2] = {100, 100}, displs[2] = {0, 100};
    int64_t t0 = unit_now_ms();
    int rc = herd__shm_allgather(s, x, y, counts, displs, sizeof x[0]);
    int64_t took = unit_now_ms() - t0;
    int failures = rc != HERD_ERR_TIMEOUT ||
                   strstr(herd__status_last(), "shared-memory allgather: local rank 1 did not "
                                               "reach chunk 1 within 300 ms") == NULL;
    failures += took < 300 || took > 1400;
    if (failures)
        fprintf(stderr, "absent peer: status %d after %lld ms, '%s'\n", rc, (long long)took,
                herd__status_last());
    return failures;
}

static void test_absent_peer_allgather_times_out(void)
{
    UNIT_EQ_INT(run_ranks(2, SMALL_REGION, 300, absent_peer_allgather, NULL), 0);
}

static void test_attach_refuses_bad_params(void)
{
    char region[SMALL_REGION];
    void *regions[1] = {region};
    herd_shm_t *s = NULL;
    herd_shm_params_t p = {.nranks = 1, .me = 1, .regions = regions,
                           .region_bytes = sizeof region};
    UNIT_EQ_INT(herd__shm_attach(&s, &p), HERD_ERR_INVALID_ARG);
    p.me = 0;
    p.region_bytes = 100;
    UNIT_EQ_INT(herd__shm_attach(&s, &p), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd__status_last(), "at least 16384");
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"every op and dtype, 1-4 ranks, small region", test_every_op_dtype_small_region},
        {"prescale, postscale and divisor, 2-4 ranks", test_scaled_small_region},
        {"default region, large counts", test_default_region},
        {"streaming stores: the same bits, ranks storing differently", test_streaming_stores},
        {"streaming stores chosen by measuring, many calls", test_streaming_chosen_by_measuring},
        {"the across-hosts step of a hierarchical allreduce", test_across_hosts_hook},
        {"a peer that exited fails the call fast", test_dead_peer_fails_fast},
        {"a peer that never comes times out", test_absent_peer_times_out},
        {"broadcast from every root, 1-4 ranks, chunk boundaries", test_broadcast_every_root},
        {"allgather: equal, unequal, empty parts, in place", test_allgather_equal_unequal_in_place},
        {"reducescatter: every op and dtype, unequal and empty parts",
         test_reducescatter_every_op_dtype},
        {"every kind after every other, a rank late now and then", test_mixed_kinds},
        {"a dead peer fails broadcast, allgather, reducescatter", test_dead_peer_other_kinds},
        {"a peer that never comes to an allgather times out",
         test_absent_peer_allgather_times_out},
        {"attach refuses bad parameters", test_attach_refuses_bad_params},
        CU_TEST_INFO_NULL,
    };
    return unit_run("shm", tests);
}
