/* util.c - timing, statistics, the interleaved runner, herd/MPI helpers and output. */
#include <errno.h>
#include <herd.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bench.h"

/* ---- time ---------------------------------------------------------------------------------- */

static double ts_seconds(const struct timespec *ts)
{
    return (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9;
}

double bench_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts_seconds(&ts);
}

double bench_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts_seconds(&ts);
}

void bench_sleep_ms(int ms)
{
    struct timespec req = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    struct timespec rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}

/* ---- statistics ---------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

bench_stat_t bench_stat(const double *v, int n)
{
    bench_stat_t s = {NAN, NAN, NAN};
    if (n <= 0)
        return s;
    double *t = malloc(sizeof *t * (size_t)n);
    if (t == NULL)
        return s;
    memcpy(t, v, sizeof *t * (size_t)n);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    s.min = t[0];
    s.max = t[n - 1];
    s.median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    free(t);
    return s;
}

bench_stat_t bench_stat_scale(bench_stat_t s, double factor)
{
    return (bench_stat_t){s.median * factor, s.min * factor, s.max * factor};
}

/* ---- the runner ---------------------------------------------------------------------------- */

static int my_rank(void)
{
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

/* Max over ranks, result on rank 0. */
static void reduce_max(double *v, int n)
{
    MPI_Reduce(my_rank() == 0 ? MPI_IN_PLACE : v, v, n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
}

static int64_t sum_over_ranks(int64_t local)
{
    int64_t global = 0;
    MPI_Allreduce(&local, &global, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return global;
}

void bench_run_interleaved(bench_t *b, const bench_method_t *m, int nm, int warmup, int iters,
                           const bench_checker_t *chk, double *wall, double *cpu)
{
    int every = chk != NULL && b->opt.check_every;
    int64_t bad = 0;
    for (int it = -warmup; it < iters; it++) {
        int round = it + warmup;
        for (int j = 0; j < nm; j++) {
            int k = (round + j) % nm; /* rotate so no method always follows the same one */
            if (every)
                chk->prepare(chk->ctx);
            MPI_Barrier(MPI_COMM_WORLD);
            double c0 = bench_cpu();
            double t0 = bench_wall();
            m[k].run(m[k].arg);
            double t1 = bench_wall();
            double c1 = bench_cpu();
            if (it >= 0) {
                wall[k * iters + it] = t1 - t0;
                cpu[k * iters + it] = c1 - c0;
            }
            if (every)
                bad += chk->verify(chk->ctx, m[k].key);
        }
    }
    reduce_max(wall, nm * iters);
    reduce_max(cpu, nm * iters);
    if (every)
        b->failures += (int)sum_over_ranks(bad);
}

int64_t bench_check_methods(bench_t *b, const bench_method_t *m, int nm,
                            const bench_checker_t *chk)
{
    int64_t bad = 0;
    for (int k = 0; k < nm; k++) {
        chk->prepare(chk->ctx);
        MPI_Barrier(MPI_COMM_WORLD);
        m[k].run(m[k].arg);
        bad += chk->verify(chk->ctx, m[k].key);
    }
    int64_t global = sum_over_ranks(bad);
    b->failures += (int)(global > INT_MAX ? INT_MAX : global);
    return global;
}

bench_steady_t bench_steady(bench_t *b, const bench_method_t *m, int steps)
{
    bench_alloc_t a0, a1;
    MPI_Barrier(MPI_COMM_WORLD);
    bench_alloc_read(&a0);
    double c0 = bench_cpu();
    double t0 = bench_wall();
    for (int i = 0; i < steps; i++)
        m->run(m->arg);
    double t1 = bench_wall();
    double c1 = bench_cpu();
    bench_alloc_read(&a1);
    double v[6] = {(t1 - t0) / steps,
                   (c1 - c0) / steps,
                   (double)(a1.allocs - a0.allocs) / steps,
                   (double)(a1.bytes - a0.bytes) / steps,
                   (double)(a1.lib_allocs - a0.lib_allocs) / steps,
                   (double)(a1.lib_bytes - a0.lib_bytes) / steps};
    reduce_max(v, 6);
    if (b->rank == 0 && b->alloc_herd && v[4] > 0) {
        b->herd_alloc_windows++;
        fprintf(stderr, "herd_bench: '%s': herd allocated %.2f times per step (%.0f bytes) in "
                "%d back-to-back steps\n", m->label, v[4], v[5], steps);
    }
    return (bench_steady_t){v[0], v[1], v[2], v[3], v[4], v[5]};
}

/* ---- herd and MPI helpers ------------------------------------------------------------------ */

void bench_herd_check(int rc, const char *what, const char *name)
{
    if (rc == HERD_OK)
        return;
    fprintf(stderr, "herd_bench: rank %d: %s('%s') failed: %s: %s\n", my_rank(), what,
            name ? name : "", herd_status_name(rc), herd_last_error());
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
}

int64_t bench_herd_submit(const char *name, float *buf, int64_t count, int op)
{
    herd_handle_t h = 0;
    int rc = herd_push_pull(name, buf, buf, count, HERD_FLOAT32, op, HERD_DEVICE_CPU, &h);
    bench_herd_check(rc, "herd_push_pull", name);
    return h;
}

/* The watchdog: herd_wait_handle(-1) (the path a framework uses, and the one where herd may run
 * its rounds on the waiting thread) has no timeout of its own, so a thread that wakes every
 * second or so aborts the job when one wait makes no progress for --timeout-ms. The waiting
 * thread pays two relaxed stores per wait. */
static _Atomic(const char *) wd_name; /* tensor being waited on, NULL outside a wait */
static atomic_uint_fast64_t wd_waits; /* waits completed: written by the waiting thread only */
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond = PTHREAD_COND_INITIALIZER;
static int wd_stop;                   /* guarded by wd_lock */
static int wd_running;
static pthread_t wd_thread;
static int64_t wd_timeout_ms;

static void *watchdog_main(void *arg)
{
    (void)arg;
    int64_t interval_ms = wd_timeout_ms / 4 < 1000 ? (wd_timeout_ms / 4 > 0 ? wd_timeout_ms / 4 : 1)
                                                   : 1000;
    uint_fast64_t last = atomic_load(&wd_waits);
    double since = bench_wall();
    pthread_mutex_lock(&wd_lock);
    while (!wd_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += interval_ms / 1000;
        ts.tv_nsec += (long)(interval_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&wd_cond, &wd_lock, &ts);
        uint_fast64_t now_waits = atomic_load_explicit(&wd_waits, memory_order_relaxed);
        const char *name = atomic_load_explicit(&wd_name, memory_order_relaxed);
        double now = bench_wall();
        if (now_waits != last || name == NULL) {
            last = now_waits;
            since = now;
            continue;
        }
        if ((now - since) * 1e3 >= (double)wd_timeout_ms) {
            fprintf(stderr,
                    "herd_bench: rank %d: herd_wait_handle on tensor '%s' has not returned "
                    "after %.0f ms: herd looks hung; aborting\n",
                    my_rank(), name, (now - since) * 1e3);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, 4);
        }
    }
    pthread_mutex_unlock(&wd_lock);
    return NULL;
}

void bench_watchdog_start(int64_t timeout_ms)
{
    if (timeout_ms <= 0)
        return;
    wd_timeout_ms = timeout_ms;
    wd_running = pthread_create(&wd_thread, NULL, watchdog_main, NULL) == 0;
}

void bench_watchdog_stop(void)
{
    if (!wd_running)
        return;
    pthread_mutex_lock(&wd_lock);
    wd_stop = 1;
    pthread_cond_signal(&wd_cond);
    pthread_mutex_unlock(&wd_lock);
    pthread_join(wd_thread, NULL);
    wd_running = 0;
}

void bench_herd_wait(int64_t handle, const char *name, int64_t wait_ms)
{
    atomic_store_explicit(&wd_name, name, memory_order_relaxed);
    int rc = herd_wait_handle(handle, wait_ms);
    /* With a finite --wait-ms the handle stays valid after a timeout: wait again (the watchdog
     * still catches a hang). */
    while (rc == HERD_ERR_TIMEOUT && wait_ms >= 0)
        rc = herd_wait_handle(handle, wait_ms);
    atomic_store_explicit(&wd_name, NULL, memory_order_relaxed);
    atomic_store_explicit(&wd_waits, atomic_load_explicit(&wd_waits, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    bench_herd_check(rc, "herd_wait_handle", name);
}

void bench_divide(float *buf, int64_t count, int n)
{
    float d = (float)n;
    for (int64_t i = 0; i < count; i++)
        buf[i] = buf[i] / d;
}

void bench_mpi_allreduce(float *buf, int64_t count, int average)
{
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    for (int64_t off = 0; off < count; off += INT_MAX) {
        int c = (int)(count - off < INT_MAX ? count - off : INT_MAX);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) {
            fprintf(stderr, "herd_bench: rank %d: MPI_Allreduce failed (%d)\n", my_rank(), rc);
            MPI_Abort(MPI_COMM_WORLD, 5);
        }
        if (average)
            bench_divide(buf + off, c, n);
    }
}

float bench_value(int64_t tensor, int64_t k)
{
    return (float)((tensor * 131 + k) & 1023);
}

float bench_rank_value(int64_t tensor, int64_t k, int rank, int size)
{
    return bench_value(tensor, k) + (float)(2 * rank - (size - 1));
}

/* ---- output -------------------------------------------------------------------------------- */

void bench_text(const bench_t *b, const char *fmt, ...)
{
    if (b->rank != 0 || b->opt.json)
        return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* Hand-written JSON writer: a few dozen lines instead of a dependency for one flat report. */
enum { JSON_MAX_DEPTH = 32 };
static int json_depth;
static int json_first[JSON_MAX_DEPTH];

static int json_on(const bench_t *b)
{
    return b->rank == 0 && b->opt.json;
}

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_prefix(const char *key)
{
    if (json_depth > 0) {
        if (!json_first[json_depth])
            putchar(',');
        json_first[json_depth] = 0;
    }
    if (key != NULL) {
        json_string(key);
        putchar(':');
    }
}

static void json_open(const bench_t *b, const char *key, char c)
{
    if (!json_on(b))
        return;
    json_prefix(key);
    putchar(c);
    if (json_depth + 1 < JSON_MAX_DEPTH)
        json_first[++json_depth] = 1;
}

static void json_close(const bench_t *b, char c)
{
    if (!json_on(b))
        return;
    putchar(c);
    if (json_depth > 0)
        json_depth--;
    if (json_depth == 0) {
        putchar('\n');
        fflush(stdout);
    }
}

void bench_json_begin(const bench_t *b, const char *key) { json_open(b, key, '{'); }
void bench_json_end(const bench_t *b) { json_close(b, '}'); }
void bench_json_array(const bench_t *b, const char *key) { json_open(b, key, '['); }
void bench_json_array_end(const bench_t *b) { json_close(b, ']'); }

void bench_json_num(const bench_t *b, const char *key, double v)
{
    if (!json_on(b))
        return;
    json_prefix(key);
    if (isfinite(v))
        printf("%.9g", v);
    else
        fputs("null", stdout);
}

void bench_json_int(const bench_t *b, const char *key, long long v)
{
    if (!json_on(b))
        return;
    json_prefix(key);
    printf("%lld", v);
}

void bench_json_str(const bench_t *b, const char *key, const char *s)
{
    if (!json_on(b))
        return;
    json_prefix(key);
    if (s == NULL)
        fputs("null", stdout);
    else
        json_string(s);
}

void bench_json_stat(const bench_t *b, const char *key, bench_stat_t s)
{
    bench_json_begin(b, key);
    bench_json_num(b, "median", s.median);
    bench_json_num(b, "min", s.min);
    bench_json_num(b, "max", s.max);
    bench_json_end(b);
}

const char *bench_fmt_bytes(int64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    int64_t v = bytes;
    while (u < 3 && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    if (u > 0 || bytes < 10000)
        snprintf(buf, len, "%lld %s", (long long)v, units[u]);
    else
        snprintf(buf, len, "%.1f MB", (double)bytes / 1e6);
    return buf;
}

int bench_parse_bytes(const char *text, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || v < 0)
        return -1;
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0)
        end += strlen(end);
    if (*end != '\0' || v > (LLONG_MAX >> shift))
        return -1;
    *out = (int64_t)v << shift;
    return 0;
}

/* ---- herd's event counters ----------------------------------------------------------------- */

void bench_counters_snap(int64_t v[BENCH_MAX_COUNTERS])
{
    for (int i = 0; i < BENCH_MAX_COUNTERS; i++) {
        const char *name = herd_counter_name(i);
        v[i] = 0;
        if (name != NULL)
            herd_counter(name, &v[i]);
    }
}

void bench_counters_per(bench_t *b, const char *what, const char *unit, int64_t units,
                        const int64_t before[BENCH_MAX_COUNTERS],
                        const int64_t after[BENCH_MAX_COUNTERS])
{
    int ops_index = -1;
    for (int i = 0; i < BENCH_MAX_COUNTERS && herd_counter_name(i) != NULL; i++)
        if (strcmp(herd_counter_name(i), "ops") == 0)
            ops_index = i;
    double n = units > 0 ? (double)units
               : ops_index >= 0 ? (double)(after[ops_index] - before[ops_index])
                                : 0;
    if (n <= 0)
        return;
    char line[1024], key[64];
    int len = 0;
    snprintf(key, sizeof key, "herd_counters_per_%s", unit);
    bench_json_begin(b, key);
    for (int i = 0; i < BENCH_MAX_COUNTERS && herd_counter_name(i) != NULL; i++) {
        if (i == ops_index && units <= 0)
            continue;
        double v = (double)(after[i] - before[i]) / n;
        bench_json_num(b, herd_counter_name(i), v);
        if (len < (int)sizeof line)
            len += snprintf(line + len, sizeof line - (size_t)len, " %s %.2f",
                            herd_counter_name(i), v);
    }
    bench_json_end(b);
    bench_text(b, "   %s, per %s (rank 0):%s\n", what, unit, line);
}
