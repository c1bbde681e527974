/* mpi_test.c - see mpi_test.h. */
#include "mpi_test.h"

#include <mpi.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <CUnit/Basic.h>

#include "herd.h"

int mt_rank = -1;
int mt_size = -1;
int mt_argc = 0;
char **mt_argv = NULL;

static atomic_long thread_failures;

/* ---- checks ------------------------------------------------------------------------------ */

void mt_check_impl(int ok, const char *text, const char *file, int line)
{
    if (!ok)
        fprintf(stderr, "[rank %d] %s:%d: check failed: %s\n", mt_rank, file, line, text);
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, text, file, "", CU_FALSE);
}

void mt_check_status_impl(int got, int want, const char *text, const char *file, int line)
{
    int ok = got == want;
    if (!ok)
        fprintf(stderr, "[rank %d] %s:%d: %s returned %s (%d), expected %s (%d); last error: %s\n",
                mt_rank, file, line, text, herd_status_name(got), got, herd_status_name(want),
                want, herd_last_error());
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, text, file, "", CU_FALSE);
}

void mt_tcheck_impl(int ok, const char *text, const char *file, int line)
{
    if (ok)
        return;
    fprintf(stderr, "[rank %d] %s:%d: check failed in a worker thread: %s\n", mt_rank, file,
            line, text);
    atomic_fetch_add(&thread_failures, 1);
}

long mt_thread_failures(void)
{
    return atomic_load(&thread_failures);
}

/* ---- herd helpers ------------------------------------------------------------------------- */

int mt_wait(int64_t handle, const char *what)
{
    for (int waited_s = 20;; waited_s += 20) {
        /* Only HERD_ERR_TIMEOUT leaves the handle live (an operation the stall inspector timed
         * out completes with HERD_ERR_STALLED): wait again. */
        int rc = herd_wait_handle(handle, 20000);
        if (rc != HERD_ERR_TIMEOUT)
            return rc;
        fprintf(stderr, "[rank %d] still waiting for '%s' (handle %lld) after %d s\n", mt_rank,
                what, (long long)handle, waited_s);
    }
}

int mt_poll_until_done(int64_t handle, const char *what)
{
    struct timespec pause = {0, 20000};
    for (long spins = 1;; spins++) {
        int rc = herd_poll_handle(handle);
        if (rc != HERD_INPROGRESS)
            return rc;
        if (spins % 1000000 == 0)
            fprintf(stderr, "[rank %d] still polling '%s' (handle %lld)\n", mt_rank, what,
                    (long long)handle);
        if (spins % 16 == 0)
            nanosleep(&pause, NULL);
        else
            sched_yield();
    }
}

int mt_last_error_has(const char *needle)
{
    const char *msg = herd_last_error();
    return msg != NULL && strstr(msg, needle) != NULL;
}

int64_t mt_fusion_threshold(void)
{
    const char *text = getenv("HERD_FUSION_THRESHOLD");
    if (text == NULL || text[0] == '\0')
        return INT64_C(64) << 20;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    int shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10;
    else if (*end == 'm' || *end == 'M')
        shift = 20;
    else if (*end == 'g' || *end == 'G')
        shift = 30;
    return (int64_t)v << shift;
}

int64_t mt_large_count(int dtype)
{
    int64_t esize = (int64_t)mt_dtype_size(dtype);
    int64_t threshold = mt_fusion_threshold();
    int64_t bytes = threshold <= (INT64_C(1) << 20) ? threshold : (INT64_C(1) << 20);
    return bytes / esize + 3; /* an odd tail past the threshold */
}

/* ---- values -------------------------------------------------------------------------------- */

uint64_t mt_mix(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

uint64_t mt_rng_next(mt_rng_t *r)
{
    r->state += UINT64_C(0x9e3779b97f4a7c15);
    return mt_mix(r->state);
}

static int64_t in_range(uint64_t h, int64_t lo, int64_t hi)
{
    if (lo == INT64_MIN && hi == INT64_MAX)
        return (int64_t)h;
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
    return (int64_t)((uint64_t)lo + h % span);
}

int64_t mt_rng_range(mt_rng_t *r, int64_t lo, int64_t hi)
{
    return in_range(mt_rng_next(r), lo, hi);
}

void mt_shuffle(mt_rng_t *r, int64_t *v, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = mt_rng_range(r, 0, i);
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

int mt_is_float(int dtype)
{
    return dtype == HERD_FLOAT16 || dtype == HERD_BFLOAT16 || dtype == HERD_FLOAT32 ||
           dtype == HERD_FLOAT64;
}

const char *mt_dtype_name(int dtype)
{
    static const char *const names[] = {"uint8", "int8", "int32", "int64",
                                        "fp16", "bf16", "fp32", "fp64"};
    return dtype >= 0 && dtype < MT_NUM_DTYPES ? names[dtype] : "bad-dtype";
}

const char *mt_op_name(int op)
{
    static const char *const names[] = {"sum", "avg", "min", "max", "prod"};
    return op >= 0 && op < MT_NUM_OPS ? names[op] : (op == MT_BCAST ? "bcast" : "bad-op");
}

size_t mt_dtype_size(int dtype)
{
    static const size_t sizes[] = {1, 1, 4, 8, 2, 2, 4, 8};
    return dtype >= 0 && dtype < MT_NUM_DTYPES ? sizes[dtype] : 0;
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void inexact(const char *what, double v)
{
    fprintf(stderr, "[rank %d] test bug: %.17g is not exactly representable in %s\n", mt_rank,
            v, what);
    abort();
}

uint16_t mt_fp16_from_double(double v)
{
    float f = (float)v;
    if ((double)f != v)
        inexact("float16", v);
    uint32_t u = float_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a == 0)
        return sign;
    int e = (int)(a >> 23) - 127;
    uint32_t m = a & 0x7fffffu;
    if (e < -14 || e > 15 || (m & 0x1fffu) != 0)
        inexact("float16", v);
    return (uint16_t)(sign | (uint16_t)((unsigned)(e + 15) << 10) | (uint16_t)(m >> 13));
}

double mt_fp16_to_double(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1f)
        return (double)bits_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        double v = (double)m * 5.9604644775390625e-8; /* m * 2^-24 */
        return sign ? -v : v;
    }
    return (double)bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t mt_bf16_from_double(double v)
{
    float f = (float)v;
    if ((double)f != v)
        inexact("bfloat16", v);
    uint32_t u = float_bits(f);
    if ((u & 0xffffu) != 0)
        inexact("bfloat16", v);
    return (uint16_t)(u >> 16);
}

double mt_bf16_to_double(uint16_t b)
{
    return (double)bits_float((uint32_t)b << 16);
}

void mt_put_double(int dtype, void *buf, int64_t i, double v)
{
    switch (dtype) {
    case HERD_FLOAT16: ((uint16_t *)buf)[i] = mt_fp16_from_double(v); break;
    case HERD_BFLOAT16: ((uint16_t *)buf)[i] = mt_bf16_from_double(v); break;
    case HERD_FLOAT32:
        if ((double)(float)v != v)
            inexact("float32", v);
        ((float *)buf)[i] = (float)v;
        break;
    case HERD_FLOAT64: ((double *)buf)[i] = v; break;
    default: mt_put(dtype, buf, i, (int64_t)v); break;
    }
}

void mt_put(int dtype, void *buf, int64_t i, int64_t v)
{
    switch (dtype) {
    case HERD_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    case HERD_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
    case HERD_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case HERD_INT64: ((int64_t *)buf)[i] = v; break;
    default: mt_put_double(dtype, buf, i, (double)v); break;
    }
}

int64_t mt_get_int(int dtype, const void *buf, int64_t i)
{
    switch (dtype) {
    case HERD_UINT8: return ((const uint8_t *)buf)[i];
    case HERD_INT8: return ((const int8_t *)buf)[i];
    case HERD_INT32: return ((const int32_t *)buf)[i];
    case HERD_INT64: return ((const int64_t *)buf)[i];
    default: return (int64_t)mt_get_double(dtype, buf, i);
    }
}

double mt_get_double(int dtype, const void *buf, int64_t i)
{
    switch (dtype) {
    case HERD_FLOAT16: return mt_fp16_to_double(((const uint16_t *)buf)[i]);
    case HERD_BFLOAT16: return mt_bf16_to_double(((const uint16_t *)buf)[i]);
    case HERD_FLOAT32: return (double)((const float *)buf)[i];
    case HERD_FLOAT64: return ((const double *)buf)[i];
    default: return (double)mt_get_int(dtype, buf, i);
    }
}

/* Per-dtype ranges. sum: a rank's input for SUM/AVERAGE such that every partial sum over up to
 * 4 ranks is exact and in range; avg: |a| bound for float AVERAGE inputs a + rank (the mean is
 * then a + (size-1)/2, exact); any: MIN/MAX/broadcast inputs, all exactly representable. */
typedef struct value_range {
    int64_t sum_lo, sum_hi, avg, any_lo, any_hi;
} value_range_t;

static const value_range_t ranges[MT_NUM_DTYPES] = {
    [HERD_UINT8] = {0, 63, 0, 0, 255},
    [HERD_INT8] = {-31, 31, 0, -128, 127},
    [HERD_INT32] = {-(INT64_C(1) << 28), INT64_C(1) << 28, 0, INT32_MIN, INT32_MAX},
    [HERD_INT64] = {-(INT64_C(1) << 60), INT64_C(1) << 60, 0, INT64_MIN, INT64_MAX},
    [HERD_FLOAT16] = {-500, 500, 400, -2048, 2048},
    [HERD_BFLOAT16] = {-60, 60, 50, -256, 256},
    [HERD_FLOAT32] = {-(INT64_C(1) << 22), INT64_C(1) << 22, INT64_C(1) << 21,
                      -(INT64_C(1) << 24), INT64_C(1) << 24},
    [HERD_FLOAT64] = {-(INT64_C(1) << 50), INT64_C(1) << 50, INT64_C(1) << 49,
                      -(INT64_C(1) << 53), INT64_C(1) << 53},
};

int64_t mt_value(int dtype, int op, int rank, int64_t i, uint64_t salt)
{
    const value_range_t *rg = &ranges[dtype];
    uint64_t common = mt_mix(mt_mix(salt) ^ (uint64_t)i);
    uint64_t h = mt_mix(common ^ ((uint64_t)(rank + 1) << 40));
    switch (op) {
    case HERD_PRODUCT: {
        static const int64_t signed_set[] = {-3, -2, -1, 1, 2, 3};
        static const int64_t unsigned_set[] = {1, 2, 3};
        if (h % 61 == 0)
            return 0;
        if (dtype == HERD_UINT8)
            return unsigned_set[(h >> 8) % 3];
        return signed_set[(h >> 8) % 6];
    }
    case HERD_SUM:
        return in_range(h, rg->sum_lo, rg->sum_hi);
    case HERD_AVERAGE:
        if (mt_is_float(dtype))
            return in_range(common, -rg->avg, rg->avg) + rank;
        return in_range(h, rg->sum_lo, rg->sum_hi);
    default: /* MIN, MAX, broadcast */
        return in_range(h, rg->any_lo, rg->any_hi);
    }
}

void mt_fill(int dtype, int op, int rank, uint64_t salt, void *buf, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        mt_put(dtype, buf, i, mt_value(dtype, op, rank, i, salt));
}

int64_t mt_combine(int op, int64_t a, int64_t b)
{
    switch (op) {
    case HERD_PRODUCT: return a * b;
    case HERD_MIN: return b < a ? b : a;
    case HERD_MAX: return b > a ? b : a;
    default: return a + b;
    }
}

int64_t mt_verify_allreduce(int dtype, int op, int size, uint64_t salt, const void *buf,
                            int64_t n, const char *what)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t acc = mt_value(dtype, op, 0, i, salt);
        for (int r = 1; r < size; r++)
            acc = mt_combine(op, acc, mt_value(dtype, op, r, i, salt));
        int ok;
        double want_d = 0, got_d = 0;
        int64_t want_i = 0, got_i = 0;
        if (mt_is_float(dtype)) {
            /* Every partial result is an integer well inside the exact range, so int64 holds
             * it exactly; only the mean can be a fraction (exact by the choice of inputs). */
            want_d = op == HERD_AVERAGE ? (double)acc / size : (double)acc;
            got_d = mt_get_double(dtype, buf, i);
            ok = got_d == want_d;
        } else {
            want_i = op == HERD_AVERAGE ? acc / size : acc; /* C division truncates toward 0 */
            got_i = mt_get_int(dtype, buf, i);
            ok = got_i == want_i;
        }
        if (!ok) {
            if (bad < 3) {
                if (mt_is_float(dtype))
                    fprintf(stderr, "[rank %d] %s: element %lld of %lld: got %.17g, want %.17g\n",
                            mt_rank, what, (long long)i, (long long)n, got_d, want_d);
                else
                    fprintf(stderr, "[rank %d] %s: element %lld of %lld: got %lld, want %lld\n",
                            mt_rank, what, (long long)i, (long long)n, (long long)got_i,
                            (long long)want_i);
            }
            bad++;
        }
    }
    if (bad > 3)
        fprintf(stderr, "[rank %d] %s: %lld of %lld elements wrong\n", mt_rank, what,
                (long long)bad, (long long)n);
    return bad;
}

int64_t mt_verify_broadcast(int dtype, int root, uint64_t salt, const void *buf, int64_t n,
                            const char *what)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t want = mt_value(dtype, MT_BCAST, root, i, salt);
        int64_t got = mt_get_int(dtype, buf, i);
        int ok = mt_is_float(dtype) ? mt_get_double(dtype, buf, i) == (double)want
                                    : got == want;
        if (!ok) {
            if (bad < 3)
                fprintf(stderr, "[rank %d] %s: element %lld of %lld: got %.17g, want %lld\n",
                        mt_rank, what, (long long)i, (long long)n,
                        mt_get_double(dtype, buf, i), (long long)want);
            bad++;
        }
    }
    if (bad > 3)
        fprintf(stderr, "[rank %d] %s: %lld of %lld elements wrong\n", mt_rank, what,
                (long long)bad, (long long)n);
    return bad;
}

void *mt_alloc(size_t bytes)
{
    void *p = NULL;
    size_t cap = (bytes + 63) & ~(size_t)63;
    if (cap == 0)
        cap = 64;
    if (posix_memalign(&p, 64, cap) != 0) {
        fprintf(stderr, "[rank %d] out of memory (%zu bytes)\n", mt_rank, cap);
        abort();
    }
    memset(p, 0, cap);
    return p;
}

/* ---- the runner ------------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int mt_mpi_init(int *argc, char ***argv)
{
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "MPI_Init_thread failed\n");
        return 1;
    }
    if (provided < MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "this MPI does not provide MPI_THREAD_MULTIPLE\n");
        MPI_Finalize();
        return 1;
    }
    return 0;
}

/* Runs the CUnit suite on this rank; returns the local failure count. */
long mt_run_suite(const char *suite_name, const mt_test_t *tests, size_t ntests)
{
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "[rank %d] CU_initialize_registry: %s\n", mt_rank, CU_get_error_msg());
        return 1;
    }
    long failures = 0;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    if (suite == NULL)
        failures++;
    for (size_t i = 0; suite != NULL && i < ntests; i++)
        if (CU_add_test(suite, tests[i].name, tests[i].fn) == NULL)
            failures++;
    if (failures == 0) {
        /* Rank 0 prints CUnit's report; the others run quietly and print only failures. */
        CU_basic_set_mode(CU_BRM_VERBOSE);
        CU_ErrorCode rc = mt_rank == 0 ? CU_basic_run_tests() : CU_run_all_tests();
        if (rc != CUE_SUCCESS)
            failures++;
        failures += (long)CU_get_number_of_failures();
    } else {
        fprintf(stderr, "[rank %d] cannot register the suite: %s\n", mt_rank,
                CU_get_error_msg());
    }
    CU_cleanup_registry();
    return failures;
}

/* Sums failures over every rank; rank 0 names the ranks that failed. */
static long sum_failures(const char *suite, long local, double seconds)
{
    long global = 0;
    long *per_rank = mt_rank == 0 ? calloc((size_t)mt_size, sizeof *per_rank) : NULL;
    MPI_Gather(&local, 1, MPI_LONG, per_rank, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    MPI_Allreduce(&local, &global, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (mt_rank == 0) {
        printf("\nmpi suite '%s' on %d rank(s): %ld failure(s) in all, %.2f s", suite, mt_size,
               global, seconds);
        for (int r = 0; r < mt_size && global > 0; r++)
            printf("%s rank %d: %ld", r == 0 ? " (" : ",", r, per_rank[r]);
        printf("%s\n", global > 0 ? ")" : "");
        fflush(stdout);
    }
    free(per_rank);
    return global;
}

/* MT_NOTHING: MPI is not up until a test's herd_init brings it up, and may be gone again. */
static int run_without_mpi(const char *suite, const mt_test_t *tests, size_t ntests)
{
    const char *env_rank = getenv("OMPI_COMM_WORLD_RANK");
    mt_rank = env_rank != NULL ? atoi(env_rank) : 0;
    const char *env_size = getenv("OMPI_COMM_WORLD_SIZE");
    mt_size = env_size != NULL ? atoi(env_size) : 1;
    double start = now_s();
    long local = mt_run_suite(suite, tests, ntests);
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) {
        /* Every rank ran the same calls: each reports its own count and exits accordingly. */
        if (local > 0 || mt_rank == 0)
            printf("\nmpi suite '%s', rank %d (MPI not up at the end): %ld failure(s)\n", suite,
                   mt_rank, local);
        return local > 0 ? 1 : 0;
    }
    long global = sum_failures(suite, local, now_s() - start);
    if (herd_shutdown() != HERD_OK)
        global++;
    return global > 0 ? 1 : 0;
}

int mt_main(int argc, char **argv, const char *suite, const mt_test_t *tests, size_t ntests,
            int mode)
{
    mt_argc = argc - 1;
    mt_argv = argv + 1;
    setvbuf(stderr, NULL, _IONBF, 0);
    if (mode == MT_NOTHING)
        return run_without_mpi(suite, tests, ntests);
    if (mode != MT_HERD_OWNS_MPI && mt_mpi_init(&argc, &argv) != 0)
        return 1;
    if (mode != MT_USER_MPI_NO_INIT) {
        int rc = herd_init();
        if (rc != HERD_OK) {
            fprintf(stderr, "herd_init: %s: %s\n", herd_status_name(rc), herd_last_error());
            if (mode != MT_HERD_OWNS_MPI)
                MPI_Finalize();
            return 1;
        }
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mt_size);

    double start = now_s();
    long local = mt_run_suite(suite, tests, ntests);
    if (mode == MT_HERD_OWNS_MPI) {
        /* MPI belongs to herd here: sum while it is still up, then check herd closes it. */
        long global = sum_failures(suite, local, now_s() - start);
        int rc = herd_shutdown();
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (rc != HERD_OK || !finalized) {
            fprintf(stderr, "[rank %d] herd_shutdown returned %s, MPI_Finalized %d (herd "
                    "initialised MPI, so it must finalise it)\n", mt_rank,
                    herd_status_name(rc), finalized);
            return 1;
        }
        return global > 0 ? 1 : 0;
    }
    /* The program owns MPI: herd_shutdown must leave it running. */
    int rc = herd_shutdown();
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (finalized) {
        fprintf(stderr, "[rank %d] herd_shutdown finalised the program's MPI\n", mt_rank);
        return 1;
    }
    if (rc != HERD_OK) {
        fprintf(stderr, "[rank %d] final herd_shutdown returned %s: %s\n", mt_rank,
                herd_status_name(rc), herd_last_error());
        local++;
    }
    long global = sum_failures(suite, local, now_s() - start);
    MPI_Finalize();
    return global > 0 ? 1 : 0;
}
