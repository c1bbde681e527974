/* test_shm.c - the shared-memory plane (backend/shm.c) without MPI: 1-4 forked processes share
 * an anonymous mapping as the segment. Every op x dtype, counts around the whole-tensor limit,
 * the chunk and share boundaries, in place and out of place, with and without pre/postscale and
 * a divisor; each result is compared element by element with the exact value (inputs are small
 * integers, so sums and products are exact in every dtype and the order of combination does not
 * matter). Then the failures: a peer that exits, and one that never comes (timeout). */
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
                                   .across = run_across};
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
    run_across = NULL;
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
        {"the across-hosts step of a hierarchical allreduce", test_across_hosts_hook},
        {"a peer that exited fails the call fast", test_dead_peer_fails_fast},
        {"a peer that never comes times out", test_absent_peer_times_out},
        {"attach refuses bad parameters", test_attach_refuses_bad_params},
        CU_TEST_INFO_NULL,
    };
    return unit_run("shm", tests);
}
