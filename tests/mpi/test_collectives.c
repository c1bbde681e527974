/* test_collectives.c - the collectives beyond allreduce and broadcast (ABI 2): allgather(v),
 * reducescatter(v), alltoall(v), barrier, scaled allreduce, groups and join. Every rank fills
 * known values (mt_value), submits in its own random order, and checks every element of every
 * result against the exact expectation; inputs must come back unchanged. Registered with a small
 * fusion threshold so that both fused groups and tensors alone are exercised. */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herd.h"
#include "mpi_test.h"

enum { MAXN = 64 };

static const int all_dtypes[MT_NUM_DTYPES] = {HERD_UINT8,   HERD_INT8,     HERD_INT32,
                                              HERD_INT64,   HERD_FLOAT16,  HERD_BFLOAT16,
                                              HERD_FLOAT32, HERD_FLOAT64};

/* The exact reduction of element `gi` over the ranks with active[r] set (all when NULL), with
 * the op's AVERAGE dividing by the number of them, then compared with element i of buf. */
static int reduced_ok(int dtype, int op, const int *active, uint64_t salt, int64_t gi,
                      const void *buf, int64_t i, const char *what)
{
    int64_t acc = 0;
    int n = 0;
    for (int r = 0; r < mt_size; r++) {
        if (active != NULL && !active[r])
            continue;
        int64_t v = mt_value(dtype, op, r, gi, salt);
        acc = n == 0 ? v : mt_combine(op, acc, v);
        n++;
    }
    int ok;
    if (mt_is_float(dtype)) {
        double want = op == HERD_AVERAGE ? (double)acc / n : (double)acc;
        double got = mt_get_double(dtype, buf, i);
        ok = got == want;
        if (!ok)
            fprintf(stderr, "[rank %d] %s: element %lld: got %.17g, want %.17g\n", mt_rank, what,
                    (long long)i, got, want);
    } else {
        int64_t want = op == HERD_AVERAGE ? acc / n : acc;
        int64_t got = mt_get_int(dtype, buf, i);
        ok = got == want;
        if (!ok)
            fprintf(stderr, "[rank %d] %s: element %lld: got %lld, want %lld\n", mt_rank, what,
                    (long long)i, (long long)got, (long long)want);
    }
    return ok;
}

/* Equal to rank `r`'s value at `gi` (MT_BCAST range), or to zero when `zero` is set. */
static int value_ok(int dtype, int r, uint64_t salt, int64_t gi, const void *buf, int64_t i,
                    int zero, const char *what)
{
    double want = zero ? 0.0 : (double)mt_value(dtype, MT_BCAST, r, gi, salt);
    double got = mt_get_double(dtype, buf, i);
    if (got != want)
        fprintf(stderr, "[rank %d] %s: element %lld (rank %d's %lld): got %.17g, want %.17g\n",
                mt_rank, what, (long long)i, r, (long long)gi, got, want);
    return got == want;
}

/* A random order of n submissions, different on every rank. */
static void rank_order(int64_t *order, int64_t n, uint64_t seed)
{
    mt_rng_t rng = {mt_mix(seed ^ (uint64_t)(mt_rank + 1) * 0x9e37u)};
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    mt_shuffle(&rng, order, n);
}

/* ---- allgather ------------------------------------------------------------------------- */

typedef struct gather_case {
    char name[80];
    int dtype;
    int64_t count;
    uint64_t salt;
    void *send, *orig, *recv;
    herd_handle_t h;
} gather_case_t;

static void test_allgather_every_dtype_and_size(void)
{
    int64_t large = mt_large_count(HERD_FLOAT64) / mt_size + 1;
    const int64_t counts[] = {0, 1, 5, 300, large};
    enum { NC = sizeof counts / sizeof counts[0] };
    gather_case_t cases[MT_NUM_DTYPES * NC];
    int64_t n = 0;
    for (int d = 0; d < MT_NUM_DTYPES; d++) {
        for (int k = 0; k < NC; k++) {
            gather_case_t *c = &cases[n++];
            c->dtype = all_dtypes[d];
            c->count = counts[k];
            c->salt = 0xa11u + (uint64_t)n;
            snprintf(c->name, sizeof c->name, "ag.%s.n%lld", mt_dtype_name(c->dtype),
                     (long long)c->count);
            size_t bytes = (size_t)c->count * mt_dtype_size(c->dtype);
            c->send = mt_alloc(bytes);
            c->orig = mt_alloc(bytes);
            c->recv = mt_alloc(bytes * (size_t)mt_size);
            mt_fill(c->dtype, MT_BCAST, mt_rank, c->salt, c->send, c->count);
            memcpy(c->orig, c->send, bytes);
            memset(c->recv, 0x5a, bytes * (size_t)mt_size);
        }
    }
    int64_t order[MT_NUM_DTYPES * NC];
    rank_order(order, n, 1);
    for (int64_t j = 0; j < n; j++) {
        gather_case_t *c = &cases[order[j]];
        MT_CHECK_STATUS(herd_allgather(c->name, c->send, c->recv, c->count, c->dtype,
                                       HERD_DEVICE_CPU, &c->h),
                        HERD_OK);
    }
    for (int64_t j = 0; j < n; j++) {
        gather_case_t *c = &cases[j];
        MT_CHECK_STATUS(mt_wait(c->h, c->name), HERD_OK);
        int bad = 0;
        for (int r = 0; r < mt_size; r++)
            for (int64_t i = 0; i < c->count && bad < 3; i++)
                bad += !value_ok(c->dtype, r, c->salt, i, c->recv, r * c->count + i, 0, c->name);
        MT_CHECK(bad == 0);
        size_t bytes = (size_t)c->count * mt_dtype_size(c->dtype);
        MT_CHECK(memcmp(c->send, c->orig, bytes) == 0);
        free(c->send);
        free(c->orig);
        free(c->recv);
    }
}

static void test_allgatherv_uneven_rows(void)
{
    /* Rows of 3 elements (tiny: MPI's path) and of 1001 (the shared-memory plane's, in several
     * chunks with 16 KiB regions, for all but the smallest dtypes). */
    for (int v = 0; v < 6; v++) {
        int variant = v % 3;
        const int64_t row = v < 3 ? 3 : 1001;
        /* Rows per rank: r + 1, rank 1 empty, or all empty. */
        int64_t my_rows = variant == 0 ? mt_rank + 1 : variant == 1 ? (mt_rank == 1 ? 0 : 2) : 0;
        for (int d = 0; d < MT_NUM_DTYPES; d++) {
            int dtype = all_dtypes[d];
            uint64_t salt = 0xb0u + (uint64_t)(v * 16 + d);
            char name[64];
            snprintf(name, sizeof name, "agv.%lld.%d.%s", (long long)row, variant,
                     mt_dtype_name(dtype));
            int64_t count = my_rows * row;
            void *send = mt_alloc((size_t)count * mt_dtype_size(dtype));
            /* Element i of rank r's part is value (r, i): rank r's part is its own values. */
            mt_fill(dtype, MT_BCAST, mt_rank, salt, send, count);
            void *out = (void *)1;
            int64_t counts[MAXN];
            memset(counts, 0xff, sizeof counts);
            herd_handle_t h = 0;
            MT_CHECK_STATUS(herd_allgatherv(name, count ? send : NULL, count, row, dtype,
                                            HERD_DEVICE_CPU, &out, counts, &h),
                            HERD_OK);
            MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
            int64_t off = 0, bad = 0;
            for (int r = 0; r < mt_size; r++) {
                int64_t want_rows = variant == 0 ? r + 1 : variant == 1 ? (r == 1 ? 0 : 2) : 0;
                MT_CHECK(counts[r] == want_rows * row);
                for (int64_t i = 0; i < counts[r] && bad < 3; i++)
                    bad += !value_ok(dtype, r, salt, i, out, off + i, 0, name);
                off += counts[r];
            }
            MT_CHECK(bad == 0);
            MT_CHECK(off > 0 ? out != NULL : out == NULL);
            MT_CHECK(out == NULL || (uintptr_t)out % 64 == 0);
            MT_CHECK_STATUS(herd_free(out, HERD_DEVICE_CPU), HERD_OK);
            free(send);
        }
    }
}

/* ---- reducescatter --------------------------------------------------------------------- */

typedef struct rs_case {
    char name[80];
    int dtype, op;
    int64_t rows, row;
    uint64_t salt;
    void *send, *orig, *recv;
    herd_handle_t h;
} rs_case_t;

static void test_reducescatter_every_dtype_op_and_split(void)
{
    int64_t large = mt_large_count(HERD_FLOAT64) / mt_size + 1;
    /* (rows, row): equal parts through herd_reducescatter, and splits that do not divide. */
    const int64_t shapes[][2] = {{0, 1}, {1, 1}, {7, 1}, {300, 1}, {large, 1}, {1, 5}, {5, 3}};
    enum { NS = sizeof shapes / sizeof shapes[0] };
    static rs_case_t cases[MT_NUM_DTYPES * MT_NUM_OPS * NS];
    int64_t n = 0;
    for (int d = 0; d < MT_NUM_DTYPES; d++) {
        for (int op = 0; op < MT_NUM_OPS; op++) {
            for (int k = 0; k < NS; k++) {
                rs_case_t *c = &cases[n++];
                c->dtype = all_dtypes[d];
                c->op = op;
                /* Shapes 0-4 are per-rank counts (equal parts); 5-6 are total rows. */
                c->rows = k < 5 ? shapes[k][0] * mt_size : shapes[k][0] * mt_size + 1;
                c->row = shapes[k][1];
                c->salt = 0x5c00u + (uint64_t)n;
                snprintf(c->name, sizeof c->name, "rs.%s.%s.%lldx%lld", mt_dtype_name(c->dtype),
                         mt_op_name(op), (long long)c->rows, (long long)c->row);
                int64_t count = c->rows * c->row;
                size_t esize = mt_dtype_size(c->dtype);
                c->send = mt_alloc((size_t)count * esize);
                c->orig = mt_alloc((size_t)count * esize);
                int64_t mine = herd_reducescatter_rows(c->rows, mt_size, mt_rank) * c->row;
                c->recv = mt_alloc((size_t)mine * esize);
                mt_fill(c->dtype, op, mt_rank, c->salt, c->send, count);
                memcpy(c->orig, c->send, (size_t)count * esize);
            }
        }
    }
    int64_t order[MT_NUM_DTYPES * MT_NUM_OPS * NS];
    rank_order(order, n, 2);
    for (int64_t j = 0; j < n; j++) {
        rs_case_t *c = &cases[order[j]];
        int rc;
        if (c->row == 1 && c->rows % mt_size == 0)
            rc = herd_reducescatter(c->name, c->send, c->recv, c->rows / mt_size, c->dtype, c->op,
                                    HERD_DEVICE_CPU, &c->h);
        else
            rc = herd_reducescatterv(c->name, c->send, c->recv, c->rows, c->row, c->dtype, c->op,
                                     HERD_DEVICE_CPU, &c->h);
        MT_CHECK_STATUS(rc, HERD_OK);
    }
    for (int64_t j = 0; j < n; j++) {
        rs_case_t *c = &cases[j];
        MT_CHECK_STATUS(mt_wait(c->h, c->name), HERD_OK);
        int64_t first = 0;
        for (int r = 0; r < mt_rank; r++)
            first += herd_reducescatter_rows(c->rows, mt_size, r);
        int64_t mine = herd_reducescatter_rows(c->rows, mt_size, mt_rank) * c->row;
        int bad = 0;
        for (int64_t i = 0; i < mine && bad < 3; i++)
            bad += !reduced_ok(c->dtype, c->op, NULL, c->salt, first * c->row + i, c->recv, i,
                               c->name);
        MT_CHECK(bad == 0);
        MT_CHECK(memcmp(c->send, c->orig,
                        (size_t)(c->rows * c->row) * mt_dtype_size(c->dtype)) == 0);
        free(c->send);
        free(c->orig);
        free(c->recv);
    }
}

/* ---- alltoall -------------------------------------------------------------------------- */

/* What rank `from` sends rank `to` at element i: a value keyed by both. */
static uint64_t a2a_salt(uint64_t base, int from, int to)
{
    return mt_mix(base ^ ((uint64_t)from << 20) ^ ((uint64_t)to << 40));
}

static void test_alltoall_equal_and_uneven(void)
{
    for (int d = 0; d < MT_NUM_DTYPES; d++) {
        int dtype = all_dtypes[d];
        size_t esize = mt_dtype_size(dtype);
        for (int64_t per = 0; per <= 6; per += 3) {
            char name[64];
            snprintf(name, sizeof name, "a2a.%s.%lld", mt_dtype_name(dtype), (long long)per);
            uint64_t base = 0xa2au + (uint64_t)(d * 8 + per);
            char *send = mt_alloc((size_t)(per * mt_size) * esize);
            char *recv = mt_alloc((size_t)(per * mt_size) * esize);
            for (int to = 0; to < mt_size; to++)
                mt_fill(dtype, MT_BCAST, 0, a2a_salt(base, mt_rank, to),
                        send + (size_t)(to * per) * esize, per);
            herd_handle_t h = 0;
            MT_CHECK_STATUS(herd_alltoall(name, send, recv, per, dtype, HERD_DEVICE_CPU, &h),
                            HERD_OK);
            MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
            int bad = 0;
            for (int from = 0; from < mt_size; from++)
                for (int64_t i = 0; i < per && bad < 3; i++)
                    bad += !value_ok(dtype, 0, a2a_salt(base, from, mt_rank), i, recv,
                                     from * per + i, 0, name);
            MT_CHECK(bad == 0);
            free(send);
            free(recv);
        }
        /* Uneven: rank r sends ((r + d) % 3) rows of 2 to rank d. */
        const int64_t row = 2;
        char name[64];
        snprintf(name, sizeof name, "a2av.%s", mt_dtype_name(dtype));
        uint64_t base = 0xa2bu + (uint64_t)d;
        int64_t sendcounts[MAXN], total = 0;
        for (int to = 0; to < mt_size; to++) {
            sendcounts[to] = ((mt_rank + to) % 3) * row;
            total += sendcounts[to];
        }
        char *send = mt_alloc((size_t)total * esize);
        for (int to = 0, off = 0; to < mt_size; off += (int)sendcounts[to], to++)
            mt_fill(dtype, MT_BCAST, 0, a2a_salt(base, mt_rank, to), send + (size_t)off * esize,
                    sendcounts[to]);
        void *out = NULL;
        int64_t recvcounts[MAXN];
        herd_handle_t h = 0;
        MT_CHECK_STATUS(herd_alltoallv(name, send, sendcounts, row, dtype, HERD_DEVICE_CPU, &out,
                                       recvcounts, &h),
                        HERD_OK);
        MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
        int64_t off = 0;
        int bad = 0;
        for (int from = 0; from < mt_size; from++) {
            MT_CHECK(recvcounts[from] == ((from + mt_rank) % 3) * row);
            for (int64_t i = 0; i < recvcounts[from] && bad < 3; i++)
                bad += !value_ok(dtype, 0, a2a_salt(base, from, mt_rank), i, out, off + i, 0,
                                 name);
            off += recvcounts[from];
        }
        MT_CHECK(bad == 0);
        herd_free(out, HERD_DEVICE_CPU);
        free(send);
    }
}

/* ---- barrier --------------------------------------------------------------------------- */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_barrier_orders_ranks(void)
{
    for (int round = 0; round < 3; round++) {
        /* The last rank arrives late; nobody may leave before it arrived. */
        if (mt_rank == (mt_size - 1 + round) % mt_size) {
            struct timespec pause = {0, 50 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        double times[2] = {mono_s(), 0};
        herd_handle_t h = 0;
        MT_CHECK_STATUS(herd_barrier("barrier.order", &h), HERD_OK);
        MT_CHECK_STATUS(mt_wait(h, "barrier.order"), HERD_OK);
        times[1] = mono_s();
        double all[2 * MAXN];
        MPI_Allgather(times, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, MPI_COMM_WORLD);
        double last_in = 0;
        for (int r = 0; r < mt_size; r++)
            last_in = all[2 * r] > last_in ? all[2 * r] : last_in;
        MT_CHECK(times[1] >= last_in);
    }
}

/* ---- scaling --------------------------------------------------------------------------- */

static void test_scaled_allreduce(void)
{
    /* (op, prescale, postscale) whose results are exact for the test values. */
    const struct {
        int op;
        double pre, post;
    } modes[] = {{HERD_SUM, 2.0, 1.0}, {HERD_SUM, 1.0, 0.5}, {HERD_AVERAGE, 1.0, 2.0},
                 {HERD_SUM, -1.0, 1.0}};
    const int dtypes[] = {HERD_INT8, HERD_INT32, HERD_FLOAT16, HERD_BFLOAT16, HERD_FLOAT32,
                          HERD_FLOAT64};
    int64_t large = mt_large_count(HERD_FLOAT64);
    const int64_t counts[] = {1, 33, large};
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        int dtype = dtypes[d];
        size_t esize = mt_dtype_size(dtype);
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            if (!mt_is_float(dtype) && modes[m].pre == 2.0)
                continue; /* integer ranges leave no room to double */
            for (size_t k = 0; k < 3; k++) {
                for (int in_place = 0; in_place < 2; in_place++) {
                    int64_t count = counts[k];
                    int op = modes[m].op;
                    uint64_t salt = 0x5ca1eu + d * 97 + m * 13 + k * 3 + (uint64_t)in_place;
                    char name[80];
                    snprintf(name, sizeof name, "scaled.%s.%zu.%lld.%d", mt_dtype_name(dtype), m,
                             (long long)count, in_place);
                    char *send = mt_alloc((size_t)count * esize);
                    char *orig = mt_alloc((size_t)count * esize);
                    char *recv = in_place ? send : mt_alloc((size_t)count * esize);
                    mt_fill(dtype, op, mt_rank, salt, send, count);
                    memcpy(orig, send, (size_t)count * esize);
                    herd_handle_t h = 0;
                    MT_CHECK_STATUS(herd_push_pull_scaled(name, send, recv, count, dtype, op,
                                                          modes[m].pre, modes[m].post,
                                                          HERD_DEVICE_CPU, &h),
                                    HERD_OK);
                    MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
                    int bad = 0;
                    for (int64_t i = 0; i < count && bad < 3; i++) {
                        int64_t acc = 0;
                        for (int r = 0; r < mt_size; r++)
                            acc += mt_value(dtype, op, r, i, salt);
                        double want;
                        if (mt_is_float(dtype))
                            want = op == HERD_AVERAGE ? (double)acc / mt_size * modes[m].post
                                                      : (double)acc * modes[m].pre * modes[m].post;
                        else if (op == HERD_AVERAGE)
                            want = (double)(int64_t)((double)(acc / mt_size) * modes[m].post);
                        else
                            want = (double)(int64_t)((double)acc * modes[m].pre * modes[m].post);
                        double got = mt_get_double(dtype, recv, i);
                        if (got != want) {
                            fprintf(stderr, "[rank %d] %s: element %lld: got %.17g, want %.17g\n",
                                    mt_rank, name, (long long)i, got, want);
                            bad++;
                        }
                    }
                    MT_CHECK(bad == 0);
                    if (!in_place)
                        MT_CHECK(memcmp(send, orig, (size_t)count * esize) == 0);
                    free(send);
                    free(orig);
                    if (!in_place)
                        free(recv);
                }
            }
        }
    }
}

/* ---- groups ------------------------------------------------------------------------------ */

static void test_group_runs_as_one_unit(void)
{
    enum { NAR = 5 };
    float ar[NAR][17];
    int32_t ag_send[4], ag_recv[4 * MAXN];
    int64_t rs_send[3 * MAXN], rs_recv[3];
    herd_handle_t h[NAR + 2];
    for (int step = 0; step < 3; step++) {
        uint64_t salt = 0x6e0u + (uint64_t)step;
        MT_CHECK_STATUS(herd_group_start(), HERD_OK);
        MT_CHECK_STATUS(herd_group_start(), HERD_OK); /* nested: only the outer end submits */
        for (int t = 0; t < NAR; t++) {
            char name[32];
            snprintf(name, sizeof name, "grp.ar%d", (t + mt_rank) % NAR); /* order differs */
            int which = (t + mt_rank) % NAR;
            mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, salt + (uint64_t)which, ar[which], 17);
            MT_CHECK_STATUS(herd_push_pull(name, ar[which], ar[which], 17, HERD_FLOAT32,
                                           HERD_SUM, HERD_DEVICE_CPU, &h[which]),
                            HERD_OK);
        }
        MT_CHECK_STATUS(herd_group_end(), HERD_OK);
        mt_fill(HERD_INT32, MT_BCAST, mt_rank, salt, ag_send, 4);
        MT_CHECK_STATUS(herd_allgather("grp.ag", ag_send, ag_recv, 4, HERD_INT32,
                                       HERD_DEVICE_CPU, &h[NAR]),
                        HERD_OK);
        mt_fill(HERD_INT64, HERD_MAX, mt_rank, salt, rs_send, 3 * mt_size);
        MT_CHECK_STATUS(herd_reducescatter("grp.rs", rs_send, rs_recv, 3, HERD_INT64, HERD_MAX,
                                           HERD_DEVICE_CPU, &h[NAR + 1]),
                        HERD_OK);
        /* Nothing was handed to herd yet. */
        for (int t = 0; t < NAR + 2; t++)
            MT_CHECK(herd_poll_handle(h[t]) == HERD_INPROGRESS);
        MT_CHECK_STATUS(herd_group_end(), HERD_OK);
        for (int t = 0; t < NAR + 2; t++)
            MT_CHECK_STATUS(mt_wait(h[t], "grp"), HERD_OK);
        int bad = 0;
        for (int t = 0; t < NAR; t++)
            for (int64_t i = 0; i < 17; i++)
                bad += !reduced_ok(HERD_FLOAT32, HERD_SUM, NULL, salt + (uint64_t)t, i, ar[t], i,
                                   "grp.ar");
        for (int r = 0; r < mt_size; r++)
            for (int64_t i = 0; i < 4; i++)
                bad += !value_ok(HERD_INT32, r, salt, i, ag_recv, r * 4 + i, 0, "grp.ag");
        for (int64_t i = 0; i < 3; i++)
            bad += !reduced_ok(HERD_INT64, HERD_MAX, NULL, salt, mt_rank * 3 + i, rs_recv, i,
                               "grp.rs");
        MT_CHECK(bad == 0);
    }
}

static void test_group_with_a_bad_member_submits_nothing(void)
{
    float x[4] = {1, 2, 3, 4};
    herd_handle_t good = 0, bad = 0;
    MT_CHECK_STATUS(herd_group_start(), HERD_OK);
    MT_CHECK_STATUS(herd_push_pull("grp.bad.good", x, x, 4, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &good),
                    HERD_OK);
    MT_CHECK_STATUS(herd_push_pull("grp.bad.bad", x, x, 4, 99, HERD_SUM, HERD_DEVICE_CPU, &bad),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_group_end(), HERD_ERR_INVALID_USAGE);
    MT_CHECK(mt_last_error_has("grp.bad.bad"));
    MT_CHECK_STATUS(herd_wait_handle(good, -1), HERD_ERR_INVALID_USAGE);
    MT_CHECK(mt_last_error_has("grp.bad.bad"));
    /* Nothing was sent: the name is free again and works on every rank. */
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("grp.bad.good", x, x, 4, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "grp.bad.good"), HERD_OK);
    MT_CHECK(x[3] == 4.0f * (float)mt_size);
    MT_CHECK_STATUS(herd_group_end(), HERD_ERR_INVALID_USAGE);
}

/* ---- mismatches -------------------------------------------------------------------------- */

static void test_mismatches_fail_everywhere(void)
{
    if (mt_size < 2)
        return;
    int64_t buf[64] = {0}, out[64 * MAXN];
    herd_handle_t h = 0;
    /* allgather: counts must agree. */
    MT_CHECK_STATUS(herd_allgather("mm.ag", buf, out, mt_rank == 1 ? 3 : 2, HERD_INT64,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_MISMATCH);
    MT_CHECK(mt_last_error_has("mm.ag") && mt_last_error_has("rank 1"));
    /* reducescatterv: rows of different lengths. */
    MT_CHECK_STATUS(herd_reducescatterv("mm.rs", buf, out, 4, mt_rank == 1 ? 4 : 2, HERD_INT64,
                                        HERD_SUM, HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_MISMATCH);
    MT_CHECK(mt_last_error_has("rows of"));
    /* allgatherv: counts may differ, dtypes may not. */
    void *ptr = NULL;
    int64_t counts[MAXN];
    MT_CHECK_STATUS(herd_allgatherv("mm.agv", buf, 2, 1, mt_rank == 1 ? HERD_INT32 : HERD_INT64,
                                    HERD_DEVICE_CPU, &ptr, counts, &h),
                    HERD_OK);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_MISMATCH);
    MT_CHECK(ptr == NULL);
    /* reducescatter: ops must agree. */
    MT_CHECK_STATUS(herd_reducescatter("mm.rsop", buf, out, 1, HERD_INT64,
                                       mt_rank == 1 ? HERD_MAX : HERD_SUM, HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_MISMATCH);
    /* One name, two kinds. */
    if (mt_rank == 1)
        MT_CHECK_STATUS(herd_barrier("mm.kind", &h), HERD_OK);
    else
        MT_CHECK_STATUS(herd_allgather("mm.kind", buf, out, 1, HERD_INT64, HERD_DEVICE_CPU, &h),
                        HERD_OK);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_MISMATCH);
    MT_CHECK(mt_last_error_has("barrier") && mt_last_error_has("allgather"));
}

/* ---- bad arguments ----------------------------------------------------------------------- */

static void test_bad_arguments(void)
{
    int64_t buf[16] = {0}, out[16 * MAXN];
    void *ptr = NULL;
    int64_t counts[MAXN];
    herd_handle_t h = 0;
    int last = -1;
    MT_CHECK_STATUS(herd_allgather("bad", buf, out, -1, HERD_INT64, HERD_DEVICE_CPU, &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_allgather("bad", buf, buf, 4, HERD_INT64, HERD_DEVICE_CPU, &h),
                    HERD_ERR_INVALID_ARG); /* overlap: never in place */
    MT_CHECK(mt_last_error_has("overlap"));
    MT_CHECK_STATUS(herd_allgather("bad", NULL, out, 4, HERD_INT64, HERD_DEVICE_CPU, &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_allgatherv("bad", buf, 4, 0, HERD_INT64, HERD_DEVICE_CPU, &ptr, counts,
                                    &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_allgatherv("bad", buf, 4, 3, HERD_INT64, HERD_DEVICE_CPU, &ptr, counts,
                                    &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK(mt_last_error_has("multiple"));
    MT_CHECK_STATUS(herd_allgatherv("bad", buf, 4, 1, HERD_INT64, HERD_DEVICE_CPU, NULL, counts,
                                    &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_allgatherv("bad", buf, 4, 1, HERD_INT64, HERD_DEVICE_CPU, &ptr, NULL,
                                    &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_reducescatter("bad", buf, out, 1, HERD_INT64, 9, HERD_DEVICE_CPU, &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_reducescatter("bad", buf, out, -2, HERD_INT64, HERD_SUM,
                                       HERD_DEVICE_CPU, &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_reducescatterv("bad", buf, out, 4, 0, HERD_INT64, HERD_SUM,
                                        HERD_DEVICE_CPU, &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK(herd_reducescatter_rows(5, 0, 0) == -1 && herd_reducescatter_rows(5, 2, 2) == -1);
    MT_CHECK(herd_reducescatter_rows(5, 2, 0) == 3 && herd_reducescatter_rows(5, 2, 1) == 2);
    int64_t sc[MAXN];
    for (int r = 0; r < mt_size; r++)
        sc[r] = 2;
    sc[mt_size - 1] = -2;
    MT_CHECK_STATUS(herd_alltoallv("bad", buf, sc, 1, HERD_INT64, HERD_DEVICE_CPU, &ptr, counts,
                                   &h),
                    HERD_ERR_INVALID_ARG);
    sc[mt_size - 1] = 3;
    MT_CHECK_STATUS(herd_alltoallv("bad", buf, sc, 2, HERD_INT64, HERD_DEVICE_CPU, &ptr, counts,
                                   &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_alltoallv("bad", buf, NULL, 1, HERD_INT64, HERD_DEVICE_CPU, &ptr,
                                   counts, &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_push_pull_scaled("bad", buf, buf, 4, HERD_FLOAT64, HERD_SUM, 1.0 / 0.0,
                                          1.0, HERD_DEVICE_CPU, &h),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_barrier(NULL, &h), HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_barrier("bad", NULL), HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_join(HERD_DEVICE_CPU, NULL, &h), HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_join(-2, &last, &h), HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_free(NULL, HERD_DEVICE_CPU), HERD_OK);
    MT_CHECK_STATUS(herd_free(NULL, -5), HERD_ERR_INVALID_ARG);
    /* GPU memory for the host-only kinds (or a build without GPU support). */
    MT_CHECK_STATUS(herd_allgather("bad", buf, out, 1, HERD_INT64, 0, &h),
                    HERD_ERR_NOT_SUPPORTED);
    /* Join with an op of this rank still in flight: rank 0's barrier waits for the others,
     * which submit theirs only after rank 0 tried to join. */
    if (mt_size > 1) {
        herd_handle_t pending = 0;
        if (mt_rank == 0) {
            MT_CHECK_STATUS(herd_barrier("bad.pending", &pending), HERD_OK);
            MT_CHECK_STATUS(herd_join(HERD_DEVICE_CPU, &last, &h), HERD_ERR_INVALID_USAGE);
            MT_CHECK(mt_last_error_has("in flight"));
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (mt_rank != 0)
            MT_CHECK_STATUS(herd_barrier("bad.pending", &pending), HERD_OK);
        MT_CHECK_STATUS(mt_wait(pending, "bad.pending"), HERD_OK);
    }
    /* Join inside a group. */
    herd_group_start();
    MT_CHECK_STATUS(herd_join(HERD_DEVICE_CPU, &last, &h), HERD_ERR_INVALID_USAGE);
    herd_group_end();
}

/* ---- join -------------------------------------------------------------------------------- */

/* Rank r runs 2 + r steps of every kind, then joins; the others go on with the joined ranks
 * taking part through identities, zeros and empty parts. Every result is checked against the
 * ranks still active at that step. */
static void test_join_with_uneven_steps(void)
{
    int steps = 2 + mt_rank, max_steps = 2 + (mt_size - 1);
    const int64_t per = 3, row = 2;
    int root = mt_size - 1; /* the rank that runs longest: never joined while it broadcasts */
    for (int s = 0; s < steps; s++) {
        int active[MAXN];
        for (int r = 0; r < mt_size; r++)
            active[r] = 2 + r > s;
        uint64_t salt = 0x10e0u + (uint64_t)s;
        char name[64];
        herd_handle_t h[9];
        /* allreduce: SUM and AVERAGE of float64, MIN of int32 (identity: INT32_MAX). */
        double sum[5], avg[5];
        int32_t mn[5];
        mt_fill(HERD_FLOAT64, HERD_SUM, mt_rank, salt, sum, 5);
        mt_fill(HERD_FLOAT64, HERD_AVERAGE, mt_rank, salt, avg, 5);
        mt_fill(HERD_INT32, HERD_MIN, mt_rank, salt, mn, 5);
        MT_CHECK_STATUS(herd_push_pull("join.sum", sum, sum, 5, HERD_FLOAT64, HERD_SUM,
                                       HERD_DEVICE_CPU, &h[0]),
                        HERD_OK);
        MT_CHECK_STATUS(herd_push_pull("join.avg", avg, avg, 5, HERD_FLOAT64, HERD_AVERAGE,
                                       HERD_DEVICE_CPU, &h[1]),
                        HERD_OK);
        MT_CHECK_STATUS(herd_push_pull("join.min", mn, mn, 5, HERD_INT32, HERD_MIN,
                                       HERD_DEVICE_CPU, &h[2]),
                        HERD_OK);
        /* allgather: joined parts are zeros. */
        int32_t ag[3], ag_out[3 * MAXN];
        mt_fill(HERD_INT32, MT_BCAST, mt_rank, salt, ag, 3);
        MT_CHECK_STATUS(herd_allgather("join.ag", ag, ag_out, 3, HERD_INT32, HERD_DEVICE_CPU,
                                       &h[3]),
                        HERD_OK);
        /* allgatherv: joined parts are empty. */
        int32_t agv[4];
        mt_fill(HERD_INT32, MT_BCAST, mt_rank, salt ^ 1, agv, 4);
        void *agv_out = NULL;
        int64_t agv_counts[MAXN];
        MT_CHECK_STATUS(herd_allgatherv("join.agv", agv, 4, 2, HERD_INT32, HERD_DEVICE_CPU,
                                        &agv_out, agv_counts, &h[4]),
                        HERD_OK);
        /* reducescatter (SUM). */
        int64_t rs[5 * MAXN], rs_out[5];
        mt_fill(HERD_INT64, HERD_SUM, mt_rank, salt, rs, 5 * mt_size);
        MT_CHECK_STATUS(herd_reducescatter("join.rs", rs, rs_out, 5, HERD_INT64, HERD_SUM,
                                           HERD_DEVICE_CPU, &h[5]),
                        HERD_OK);
        /* alltoall (zeros from joined ranks) and alltoallv (nothing from them). */
        int32_t a2a[3 * MAXN], a2a_out[3 * MAXN];
        for (int to = 0; to < mt_size; to++)
            mt_fill(HERD_INT32, MT_BCAST, 0, a2a_salt(salt, mt_rank, to), a2a + to * per, per);
        MT_CHECK_STATUS(herd_alltoall("join.a2a", a2a, a2a_out, per, HERD_INT32, HERD_DEVICE_CPU,
                                      &h[6]),
                        HERD_OK);
        int64_t sendcounts[MAXN];
        int32_t a2av[2 * MAXN];
        for (int to = 0; to < mt_size; to++) {
            sendcounts[to] = row;
            mt_fill(HERD_INT32, MT_BCAST, 0, a2a_salt(salt ^ 7, mt_rank, to), a2av + to * row,
                    row);
        }
        void *a2av_out = NULL;
        int64_t recvcounts[MAXN];
        MT_CHECK_STATUS(herd_alltoallv("join.a2av", a2av, sendcounts, row, HERD_INT32,
                                       HERD_DEVICE_CPU, &a2av_out, recvcounts, &h[7]),
                        HERD_OK);
        /* broadcast from the rank that never joins early. */
        int64_t bc[6];
        mt_fill(HERD_INT64, MT_BCAST, mt_rank, salt, bc, 6);
        snprintf(name, sizeof name, "join.bc");
        MT_CHECK_STATUS(herd_broadcast(name, bc, 6, HERD_INT64, root, HERD_DEVICE_CPU, &h[8]),
                        HERD_OK);
        for (int k = 0; k < 9; k++)
            MT_CHECK_STATUS(mt_wait(h[k], "join step"), HERD_OK);
        int bad = 0;
        for (int64_t i = 0; i < 5; i++) {
            bad += !reduced_ok(HERD_FLOAT64, HERD_SUM, active, salt, i, sum, i, "join.sum");
            bad += !reduced_ok(HERD_FLOAT64, HERD_AVERAGE, active, salt, i, avg, i, "join.avg");
            bad += !reduced_ok(HERD_INT32, HERD_MIN, active, salt, i, mn, i, "join.min");
            bad += !reduced_ok(HERD_INT64, HERD_SUM, active, salt, mt_rank * 5 + i, rs_out, i,
                               "join.rs");
        }
        for (int r = 0; r < mt_size; r++)
            for (int64_t i = 0; i < 3; i++)
                bad += !value_ok(HERD_INT32, r, salt, i, ag_out, r * 3 + i, !active[r],
                                 "join.ag");
        int64_t off = 0;
        for (int r = 0; r < mt_size; r++) {
            MT_CHECK(agv_counts[r] == (active[r] ? 4 : 0));
            for (int64_t i = 0; i < agv_counts[r]; i++)
                bad += !value_ok(HERD_INT32, r, salt ^ 1, i, agv_out, off + i, 0, "join.agv");
            off += agv_counts[r];
        }
        off = 0;
        for (int from = 0; from < mt_size; from++) {
            for (int64_t i = 0; i < per; i++)
                bad += !value_ok(HERD_INT32, 0, a2a_salt(salt, from, mt_rank), i, a2a_out,
                                 from * per + i, !active[from], "join.a2a");
            MT_CHECK(recvcounts[from] == (active[from] ? row : 0));
            for (int64_t i = 0; i < recvcounts[from]; i++)
                bad += !value_ok(HERD_INT32, 0, a2a_salt(salt ^ 7, from, mt_rank), i, a2av_out,
                                 off + i, 0, "join.a2av");
            off += recvcounts[from];
        }
        bad += mt_verify_broadcast(HERD_INT64, root, salt, bc, 6, "join.bc") != 0;
        MT_CHECK(bad == 0);
        herd_free(agv_out, HERD_DEVICE_CPU);
        herd_free(a2av_out, HERD_DEVICE_CPU);
    }
    int last = -1;
    herd_handle_t j = 0;
    MT_CHECK_STATUS(herd_join(HERD_DEVICE_CPU, &last, &j), HERD_OK);
    /* A joined rank submits nothing until the join completes (with one rank it already has). */
    float x = 1;
    herd_handle_t no = 0;
    if (mt_rank != mt_size - 1)
        MT_CHECK_STATUS(herd_push_pull("join.late", &x, &x, 1, HERD_FLOAT32, HERD_SUM,
                                       HERD_DEVICE_CPU, &no),
                        HERD_ERR_INVALID_USAGE);
    MT_CHECK_STATUS(mt_wait(j, "join"), HERD_OK);
    MT_CHECK(last == mt_size - 1);
    (void)max_steps;
    /* Afterwards herd is back to normal: every rank takes part in a plain allreduce. */
    float y = (float)(mt_rank + 1);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("join.after", &y, &y, 1, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "join.after"), HERD_OK);
    MT_CHECK(y == (float)(mt_size * (mt_size + 1) / 2));
}

static void test_broadcast_from_a_joined_root_fails_everywhere(void)
{
    if (mt_size < 2)
        return;
    int last = -1;
    herd_handle_t j = 0, h = 0;
    if (mt_rank == 0) {
        MT_CHECK_STATUS(herd_join(HERD_DEVICE_CPU, &last, &j), HERD_OK);
    } else {
        int64_t v[3] = {1, 2, 3};
        MT_CHECK_STATUS(herd_broadcast("join.badroot", v, 3, HERD_INT64, 0, HERD_DEVICE_CPU,
                                       &h),
                        HERD_OK);
        MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_INVALID_USAGE);
        MT_CHECK(mt_last_error_has("join.badroot") && mt_last_error_has("joined"));
        MT_CHECK(v[0] == 1 && v[2] == 3);
        MT_CHECK_STATUS(herd_join(HERD_DEVICE_CPU, &last, &j), HERD_OK);
    }
    MT_CHECK_STATUS(mt_wait(j, "join"), HERD_OK);
    MT_CHECK(last >= 1);
}

/* ---- threads ----------------------------------------------------------------------------- */

typedef struct worker_arg {
    int id;
} worker_arg_t;

/* Each thread submits its own groups (groups are per thread) of an allreduce, an allgather
 * and a reduce-scatter, and checks every result. */
static void *group_worker(void *p)
{
    const worker_arg_t *w = p;
    for (int step = 0; step < 20; step++) {
        char ar_name[48], ag_name[48], rs_name[48];
        snprintf(ar_name, sizeof ar_name, "thr%d.ar", w->id);
        snprintf(ag_name, sizeof ag_name, "thr%d.ag", w->id);
        snprintf(rs_name, sizeof rs_name, "thr%d.rs", w->id);
        int64_t ar[8], ag[2], ag_out[2 * MAXN], rs[2 * MAXN], rs_out[2];
        for (int i = 0; i < 8; i++)
            ar[i] = mt_rank + w->id * 100 + step + i;
        ag[0] = mt_rank;
        ag[1] = step * 10 + w->id;
        for (int i = 0; i < 2 * mt_size; i++)
            rs[i] = i + mt_rank;
        herd_handle_t h[3];
        MT_TCHECK(herd_group_start() == HERD_OK);
        MT_TCHECK(herd_push_pull(ar_name, ar, ar, 8, HERD_INT64, HERD_SUM, HERD_DEVICE_CPU,
                                 &h[0]) == HERD_OK);
        MT_TCHECK(herd_allgather(ag_name, ag, ag_out, 2, HERD_INT64, HERD_DEVICE_CPU, &h[1]) ==
                  HERD_OK);
        MT_TCHECK(herd_reducescatter(rs_name, rs, rs_out, 2, HERD_INT64, HERD_SUM,
                                     HERD_DEVICE_CPU, &h[2]) == HERD_OK);
        MT_TCHECK(herd_group_end() == HERD_OK);
        for (int k = 0; k < 3; k++)
            MT_TCHECK(herd_wait_handle(h[k], -1) == HERD_OK);
        int64_t ranks_sum = (int64_t)mt_size * (mt_size - 1) / 2;
        for (int i = 0; i < 8; i++)
            MT_TCHECK(ar[i] == ranks_sum + (int64_t)mt_size * (w->id * 100 + step + i));
        for (int r = 0; r < mt_size; r++)
            MT_TCHECK(ag_out[2 * r] == r && ag_out[2 * r + 1] == step * 10 + w->id);
        for (int i = 0; i < 2; i++)
            MT_TCHECK(rs_out[i] == (int64_t)mt_size * (2 * mt_rank + i) + ranks_sum);
    }
    return NULL;
}

static void test_groups_from_several_threads(void)
{
    enum { NT = 3 };
    pthread_t t[NT];
    worker_arg_t args[NT];
    long before = mt_thread_failures();
    for (int i = 0; i < NT; i++) {
        args[i].id = i;
        MT_CHECK(pthread_create(&t[i], NULL, group_worker, &args[i]) == 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(t[i], NULL);
    MT_CHECK(mt_thread_failures() == before);
}

/* herd_progress_handle: a slice that ends first says HERD_INPROGRESS and keeps the handle; the
 * final call returns the status and releases it. */
static void test_progress_handle_in_slices(void)
{
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_progress_handle(h, 5), HERD_ERR_NOT_FOUND);
    if (mt_rank == 0)
        MT_CHECK_STATUS(herd_barrier("progress.b", &h), HERD_OK);
    if (mt_rank == 0 && mt_size > 1) {
        MT_CHECK_STATUS(herd_progress_handle(h, 20), HERD_INPROGRESS);
        MT_CHECK_STATUS(herd_progress_handle(h, -1), HERD_ERR_INVALID_ARG);
        MT_CHECK_STATUS(herd_poll_handle(h), HERD_INPROGRESS);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (mt_rank != 0)
        MT_CHECK_STATUS(herd_barrier("progress.b", &h), HERD_OK);
    int rc, slices = 0;
    while ((rc = herd_progress_handle(h, 10)) == HERD_INPROGRESS)
        slices++;
    MT_CHECK_STATUS(rc, HERD_OK);
    MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_NOT_FOUND);
}

/* herd_push_pull_sync: the exact result when every rank comes within the slice; a slice that
 * ends first (rank 0 alone for a while) says HERD_INPROGRESS with a live handle to drive on;
 * a bad submission fails at once with no handle. */
static void test_push_pull_sync(void)
{
    float x[5];
    herd_handle_t h = 0;
    for (int i = 0; i < 5; i++)
        x[i] = (float)(mt_rank * 10 + i);
    MT_CHECK_STATUS(herd_push_pull_sync("sync.a", x, x, 5, HERD_FLOAT32, HERD_SUM,
                                        HERD_DEVICE_CPU, 1000 * 1000, &h),
                    HERD_OK);
    for (int i = 0; i < 5; i++)
        MT_CHECK(x[i] == (float)(10 * mt_size * (mt_size - 1) / 2 + mt_size * i));
    MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_NOT_FOUND); /* released */
    MT_CHECK_STATUS(herd_push_pull_sync("sync.bad", x, x, 5, 99, HERD_SUM, HERD_DEVICE_CPU, 10,
                                        &h),
                    HERD_ERR_INVALID_ARG);
    float y = (float)mt_rank, z = -1.0f;
    int rc = HERD_OK;
    if (mt_rank == 0) {
        rc = herd_push_pull_sync("sync.late", &y, &z, 1, HERD_FLOAT32, HERD_AVERAGE,
                                 HERD_DEVICE_CPU, 20, &h);
        MT_CHECK_STATUS(rc, mt_size > 1 ? HERD_INPROGRESS : HERD_OK);
        if (mt_size > 1)
            MT_CHECK_STATUS(herd_poll_handle(h), HERD_INPROGRESS);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (mt_rank != 0)
        rc = herd_push_pull_sync("sync.late", &y, &z, 1, HERD_FLOAT32, HERD_AVERAGE,
                                 HERD_DEVICE_CPU, 10, &h);
    while (rc == HERD_INPROGRESS)
        rc = herd_progress_handle(h, 10);
    MT_CHECK_STATUS(rc, HERD_OK);
    MT_CHECK(z == (float)(mt_size - 1) / 2.0f);
    MT_CHECK(y == (float)mt_rank); /* out of place: input untouched */
}

/* Tensors that are views of one flat buffer, declared in buffer order, are reduced where they
 * lie (no packing); declared in another order they are packed as usual. Both exact, in place
 * and out of place, with AVERAGE and with scaling, submitted in a different order per rank. */
static void test_views_of_one_flat_buffer(void)
{
    enum { NT = 40, PER = 37 };
    static float flat[NT * PER], out[NT * PER];
    int64_t order[NT];
    for (int variant = 0; variant < 4; variant++) {
        int reversed = variant & 1, in_place = variant >> 1;
        char name[64];
        /* Declaration order is priority: buffer order, or its reverse. */
        for (int t = 0; t < NT; t++) {
            int which = reversed ? NT - 1 - t : t;
            snprintf(name, sizeof name, "flat%d.%d", variant, which);
            int64_t key;
            MT_CHECK_STATUS(herd_declare_tensor(name, &key), HERD_OK);
        }
        uint64_t salt = 0xf1a7u + (uint64_t)variant;
        mt_fill(HERD_FLOAT32, HERD_AVERAGE, mt_rank, salt, flat, NT * PER);
        memset(out, 0, sizeof out);
        rank_order(order, NT, 40 + (uint64_t)variant);
        herd_handle_t h[NT];
        for (int j = 0; j < NT; j++) {
            int t = (int)order[j];
            snprintf(name, sizeof name, "flat%d.%d", variant, t);
            float *dst = in_place ? flat + t * PER : out + t * PER;
            MT_CHECK_STATUS(herd_push_pull_scaled(name, flat + t * PER, dst, PER, HERD_FLOAT32,
                                                  HERD_AVERAGE, 1.0, variant == 3 ? 2.0 : 1.0,
                                                  HERD_DEVICE_CPU, &h[t]),
                            HERD_OK);
        }
        for (int t = 0; t < NT; t++)
            MT_CHECK_STATUS(mt_wait(h[t], "flat"), HERD_OK);
        const float *res = in_place ? flat : out;
        int bad = 0;
        for (int64_t i = 0; i < NT * PER && bad < 3; i++) {
            int64_t acc = 0;
            for (int r = 0; r < mt_size; r++)
                acc += mt_value(HERD_FLOAT32, HERD_AVERAGE, r, i, salt);
            double want = (double)acc / mt_size * (variant == 3 ? 2.0 : 1.0);
            if ((double)res[i] != want) {
                fprintf(stderr, "[rank %d] flat variant %d: element %lld: got %.9g, want %.9g\n",
                        mt_rank, variant, (long long)i, (double)res[i], want);
                bad++;
            }
        }
        MT_CHECK(bad == 0);
        if (!in_place) /* the input is untouched */
            for (int64_t i = 0; i < NT * PER && bad < 3; i++)
                bad += (double)flat[i] != (double)mt_value(HERD_FLOAT32, HERD_AVERAGE, mt_rank, i,
                                                           salt);
        MT_CHECK(bad == 0);
    }
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"allgather_every_dtype_and_size", test_allgather_every_dtype_and_size},
        {"allgatherv_uneven_rows", test_allgatherv_uneven_rows},
        {"reducescatter_every_dtype_op_and_split", test_reducescatter_every_dtype_op_and_split},
        {"alltoall_equal_and_uneven", test_alltoall_equal_and_uneven},
        {"barrier_orders_ranks", test_barrier_orders_ranks},
        {"scaled_allreduce", test_scaled_allreduce},
        {"group_runs_as_one_unit", test_group_runs_as_one_unit},
        {"group_with_a_bad_member_submits_nothing", test_group_with_a_bad_member_submits_nothing},
        {"mismatches_fail_everywhere", test_mismatches_fail_everywhere},
        {"bad_arguments", test_bad_arguments},
        {"join_with_uneven_steps", test_join_with_uneven_steps},
        {"broadcast_from_a_joined_root_fails_everywhere",
         test_broadcast_from_a_joined_root_fails_everywhere},
        {"groups_from_several_threads", test_groups_from_several_threads},
        {"progress_handle_in_slices", test_progress_handle_in_slices},
        {"push_pull_sync", test_push_pull_sync},
        {"views_of_one_flat_buffer", test_views_of_one_flat_buffer},
    };
    return mt_main(argc, argv, "collectives", tests, sizeof tests / sizeof tests[0],
                   MT_USER_MPI);
}
