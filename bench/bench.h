/* bench.h - shared pieces of herd_bench: options, timing, statistics, the interleaved runner,
 * output (text tables or one JSON object) and the counting allocator.
 *
 * Everything here is bench-only: nothing of it is linked into libherd.
 */
#ifndef HERD_BENCH_H
#define HERD_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* Sections, selected with --only. */
enum {
    BENCH_SEC_IDLE = 1 << 0,
    BENCH_SEC_LATENCY = 1 << 1,
    BENCH_SEC_TINY = 1 << 2,
    BENCH_SEC_WORKLOAD = 1 << 3,
    BENCH_SEC_SWEEP = 1 << 4,
    BENCH_SEC_COLLECTIVES = 1 << 5,
    BENCH_SEC_ALL = (1 << 6) - 1
};

enum { BENCH_MAX_WORKLOADS = 16 };

typedef struct bench_opts {
    unsigned sections;
    int json;
    int quick;
    int check_every;   /* refill and verify around every timed iteration (outside the timing) */
    int iters;         /* -1: each section's default */
    int warmup;        /* -1: each section's default */
    int64_t min_bytes; /* bandwidth sweep range */
    int64_t max_bytes;
    int sweep_factor;  /* 2 or 4 */
    int sweep_op;      /* HERD_AVERAGE or HERD_SUM */
    const char *csv;
    const char *workload_dir;
    const char *workloads[BENCH_MAX_WORKLOADS];
    int nworkloads;
    int tiny_count;
    int idle_ms;
    int64_t memcpy_bytes;
    int memcpy_reps;
    int steady_steps;
    int strict_allocs;  /* exit 1 when herd allocates in a steady-state or idle window */
    int64_t timeout_ms; /* watchdog: one herd wait longer than this aborts as a hang; 0 = off */
    int64_t wait_ms;    /* passed to herd_wait_handle: -1 (default) waits without deadline */
} bench_opts_t;

/* The run's shared state. */
typedef struct bench {
    bench_opts_t opt;
    int rank, size;
    int failures;    /* result mismatches, summed over ranks (every rank holds the same value) */
    int alloc_ok;    /* the counting allocator sees allocations made inside shared libraries */
    int alloc_herd;  /* ... and can tell libherd's own calls apart */
    double memcpy_bw; /* bytes/s, median, measured in this run (0 until measured) */
    double memcpy_bw_min, memcpy_bw_max;
    int herd_alloc_windows; /* rank 0: steady-state and idle windows in which herd allocated */
} bench_t;

/* ---- time ---------------------------------------------------------------------------------- */

double bench_wall(void); /* CLOCK_MONOTONIC, seconds */
double bench_cpu(void);  /* CLOCK_PROCESS_CPUTIME_ID: every thread of this process, seconds */
void bench_sleep_ms(int ms);

/* ---- statistics ---------------------------------------------------------------------------- */

typedef struct bench_stat {
    double median, min, max;
} bench_stat_t;

bench_stat_t bench_stat(const double *v, int n);
bench_stat_t bench_stat_scale(bench_stat_t s, double factor);

/* ---- the interleaved runner ---------------------------------------------------------------- */

typedef void (*bench_fn)(void *arg);

typedef struct bench_method {
    const char *key;   /* short id used in JSON: "herd", "a", ... */
    const char *label; /* for the table */
    bench_fn run;      /* one step, identical on every rank */
    void *arg;
} bench_method_t;

/* Fills the section's buffers with fresh per-rank values / counts wrong results on this rank. */
typedef struct bench_checker {
    void (*prepare)(void *ctx);
    int64_t (*verify)(void *ctx, const char *method); /* mismatching elements on this rank */
    void *ctx;
} bench_checker_t;

/*
 * Runs `warmup` then `iters` rounds; in each round every method runs once, in an order that
 * rotates from round to round, each one after an MPI_Barrier. On rank 0, wall[m * iters + i] and
 * cpu[m * iters + i] receive the maximum over ranks of method m's time in round i (seconds).
 * With chk and b->opt.check_every, every iteration runs on fresh data and is verified (both
 * outside the timed interval).
 */
void bench_run_interleaved(bench_t *b, const bench_method_t *m, int nm, int warmup, int iters,
                           const bench_checker_t *chk, double *wall, double *cpu);

/* Fresh data, one step of each method, verification; adds the global mismatch count to
 * b->failures and returns it. */
int64_t bench_check_methods(bench_t *b, const bench_method_t *m, int nm,
                            const bench_checker_t *chk);

/* Steady state: `steps` steps of one method back to back (one barrier before, none between).
 * Per step, max over ranks, on rank 0: wall and CPU seconds, heap allocations and bytes. */
typedef struct bench_steady {
    double wall, cpu, allocs, bytes, herd_allocs, herd_bytes;
} bench_steady_t;
bench_steady_t bench_steady(bench_t *b, const bench_method_t *m, int steps);

/* herd's event counters (herd_counter): a snapshot, and the differences between two printed
 * (rank 0) and written to the JSON object as "herd_counters_per_<unit>", divided by `units`,
 * or by the "ops" difference when `units` is 0. */
enum { BENCH_MAX_COUNTERS = 32 };
void bench_counters_snap(int64_t v[BENCH_MAX_COUNTERS]);
void bench_counters_per(bench_t *b, const char *what, const char *unit, int64_t units,
                        const int64_t before[BENCH_MAX_COUNTERS],
                        const int64_t after[BENCH_MAX_COUNTERS]);

/* ---- herd helpers (a herd error or a hang aborts every rank with the message) -------------- */

void bench_herd_check(int rc, const char *what, const char *name);
int64_t bench_herd_submit(const char *name, float *buf, int64_t count, int op);
void bench_herd_wait(int64_t handle, const char *name, int64_t wait_ms);
void bench_watchdog_start(int64_t timeout_ms);
void bench_watchdog_stop(void);

/* Plain-MPI pieces shared by the baselines: in-place float allreduce, then x / n when average
 * (the same division herd does). */
void bench_mpi_allreduce(float *buf, int64_t count, int average);
void bench_divide(float *buf, int64_t count, int n);

/* Exact expected values: rank r holds base + 2r - (n-1), so the sum is n * base and the average
 * is exactly base. base is a small integer, so every partial sum is exact in float32. */
float bench_value(int64_t tensor, int64_t k);
float bench_rank_value(int64_t tensor, int64_t k, int rank, int size);

/* ---- output -------------------------------------------------------------------------------- */

/* Text goes to stdout on rank 0 unless --json. */
void bench_text(const bench_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A small JSON writer (rank 0, --json only): nested objects and arrays with comma tracking. */
void bench_json_begin(const bench_t *b, const char *key);       /* '{', key NULL in arrays */
void bench_json_end(const bench_t *b);                          /* '}' */
void bench_json_array(const bench_t *b, const char *key);       /* '[' */
void bench_json_array_end(const bench_t *b);                    /* ']' */
void bench_json_num(const bench_t *b, const char *key, double v); /* NaN/inf -> null */
void bench_json_int(const bench_t *b, const char *key, long long v);
void bench_json_str(const bench_t *b, const char *key, const char *s);
void bench_json_stat(const bench_t *b, const char *key, bench_stat_t s);

const char *bench_fmt_bytes(int64_t bytes, char *buf, size_t len); /* "4 MiB", "1000 B" */
int bench_parse_bytes(const char *text, int64_t *out);

/* ---- the counting allocator (alloc_count.c) ------------------------------------------------ */

typedef struct bench_alloc {
    uint64_t allocs; /* malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign... */
    uint64_t frees;
    uint64_t bytes;  /* bytes requested */
    uint64_t lib_allocs, lib_bytes; /* of those, called directly from the tracked library */
} bench_alloc_t;

int bench_alloc_compiled(void); /* 0 in sanitizer builds, where the counter is left out */
/* Counts apart the calls made from the first loaded object whose path contains name_part
 * ("libherd"). Returns 1 when found. Call once, before the threads of interest start. */
int bench_alloc_track_library(const char *name_part);
void bench_alloc_read(bench_alloc_t *out);

/* ---- sections ------------------------------------------------------------------------------ */

void bench_section_memcpy(bench_t *b);
void bench_section_workload(bench_t *b, const char *name);

#endif
