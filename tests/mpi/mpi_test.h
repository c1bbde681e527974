/* mpi_test.h - the shared harness of the multi-rank CUnit tests.
 *
 * Every test executable is one CUnit suite run under mpiexec -n 1..4. mt_main() brings MPI and
 * herd up in the mode the suite asks for, runs the suite on every rank (rank 0 prints CUnit's
 * report), sums the failures of every rank with MPI_Allreduce so that every rank exits alike,
 * and shuts down.
 *
 * Values: every expected result is exact. mt_value() picks per-rank inputs from ranges where
 * every partial sum or product is exactly representable in the dtype (fp16 and bf16 included),
 * so the expectation does not depend on the order MPI combines ranks in.
 */
#ifndef HERD_MPI_TEST_H
#define HERD_MPI_TEST_H

#include <stddef.h>
#include <stdint.h>

#include <CUnit/CUnit.h>

/* Who initialises MPI. */
enum mt_mode {
    MT_HERD_OWNS_MPI,    /* herd_init initialises MPI and herd_shutdown finalises it */
    MT_USER_MPI,         /* the test calls MPI_Init_thread(MULTIPLE), then herd_init */
    MT_USER_MPI_NO_INIT, /* as MT_USER_MPI, but the suite calls herd_init/shutdown itself */
    MT_NOTHING           /* the suite's herd_init brings MPI up; failures are summed only if
                            MPI is up at the end (else each rank reports its own) */
};

typedef struct mt_test {
    const char *name;
    CU_TestFunc fn;
} mt_test_t;

/* This rank and the number of ranks, from MPI_COMM_WORLD; valid while a suite runs. */
extern int mt_rank;
extern int mt_size;

/* Runs the suite; returns the process exit status (0 when no rank failed anything). */
int mt_main(int argc, char **argv, const char *suite, const mt_test_t *tests, size_t ntests,
            int mode);

/* Command-line arguments after the program name, for suites that take a data file. */
extern int mt_argc;
extern char **mt_argv;

/* ---- checks: CUnit assertions that also say which rank failed ------------------------- */

void mt_check_impl(int ok, const char *text, const char *file, int line);
void mt_check_status_impl(int got, int want, const char *text, const char *file, int line);

#define MT_CHECK(cond) mt_check_impl((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
#define MT_CHECK_STATUS(got, want) mt_check_status_impl((got), (want), #got, __FILE__, __LINE__)

/* Thread-safe variant for worker threads (CUnit is not thread safe): counts into an atomic
 * that the main thread asserts on with mt_thread_failures(). */
void mt_tcheck_impl(int ok, const char *text, const char *file, int line);
#define MT_TCHECK(cond) mt_tcheck_impl((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
long mt_thread_failures(void);

/* ---- herd helpers ---------------------------------------------------------------------- */

/* herd_wait_handle(h, -1), but says on stderr every 20 s which tensor it still waits for.
 * Where the operation itself ends with HERD_ERR_TIMEOUT its message is not kept. */
int mt_wait(int64_t handle, const char *what);
/* Polls until the handle is no longer HERD_INPROGRESS; returns the final status (the handle
 * is not released). */
int mt_poll_until_done(int64_t handle, const char *what);
/* 1 if herd_last_error() contains `needle`. */
int mt_last_error_has(const char *needle);
/* The fusion threshold from HERD_FUSION_THRESHOLD (plain bytes or K/M/G), default 64 MiB. */
int64_t mt_fusion_threshold(void);
/* An element count whose bytes exceed the fusion threshold, capped so memory stays small. */
int64_t mt_large_count(int dtype);

/* ---- values ----------------------------------------------------------------------------- */

/* Deterministic 64-bit mixing and a tiny PRNG. */
uint64_t mt_mix(uint64_t x);
typedef struct mt_rng {
    uint64_t state;
} mt_rng_t;
uint64_t mt_rng_next(mt_rng_t *r);
int64_t mt_rng_range(mt_rng_t *r, int64_t lo, int64_t hi);
void mt_shuffle(mt_rng_t *r, int64_t *v, int64_t n);

int mt_is_float(int dtype);
const char *mt_dtype_name(int dtype);
const char *mt_op_name(int op);
enum { MT_NUM_DTYPES = 8, MT_NUM_OPS = 5, MT_BCAST = -1 };

/* Exact fp16/bf16 encodings of values that are representable (aborts otherwise: a test bug). */
uint16_t mt_fp16_from_double(double v);
double mt_fp16_to_double(uint16_t h);
uint16_t mt_bf16_from_double(double v);
double mt_bf16_to_double(uint16_t b);

/* Element i of a buffer of `dtype`, as an integer (integer dtypes) or a double (float dtypes). */
void mt_put(int dtype, void *buf, int64_t i, int64_t v);
void mt_put_double(int dtype, void *buf, int64_t i, double v);
int64_t mt_get_int(int dtype, const void *buf, int64_t i);
double mt_get_double(int dtype, const void *buf, int64_t i);

/* Rank `rank`'s input at element i for `op` (MT_BCAST: any representable value). */
int64_t mt_value(int dtype, int op, int rank, int64_t i, uint64_t salt);
/* a (op) b over int64: SUM and AVERAGE add, MIN, MAX, PRODUCT as named. */
int64_t mt_combine(int op, int64_t a, int64_t b);

/* Fills n elements with mt_value(dtype, op, rank, i, salt). */
void mt_fill(int dtype, int op, int rank, uint64_t salt, void *buf, int64_t n);
/* Counts elements of an allreduce result (over `size` ranks) that differ from the exact
 * expectation; prints the first few. */
int64_t mt_verify_allreduce(int dtype, int op, int size, uint64_t salt, const void *buf,
                            int64_t n, const char *what);
/* Same for a broadcast from `root`. */
int64_t mt_verify_broadcast(int dtype, int root, uint64_t salt, const void *buf, int64_t n,
                            const char *what);

/* 64-byte aligned, zeroed allocation of `bytes` (at least 64 bytes); free with free(). */
void *mt_alloc(size_t bytes);
size_t mt_dtype_size(int dtype);

/* Runs one CUnit suite on this rank (rank 0 prints the report) and returns this rank's failure
 * count, for harnesses that add their own set-up around it (tests/gpu). */
long mt_run_suite(const char *suite_name, const mt_test_t *tests, size_t ntests);

/* MPI_Init_thread with MPI_THREAD_MULTIPLE, as the test programs that own MPI need it; 0 or 1
 * (MPI already finalized again on a too-low thread level). */
int mt_mpi_init(int *argc, char ***argv);

#endif /* HERD_MPI_TEST_H */
