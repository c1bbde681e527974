/* soak.c - a long randomized run: every dtype, every op, broadcasts from random roots, in place
 * and out of place, sizes from 0 to 64K elements with occasional ones up to 512K, submitted by
 * 2-3 threads per rank (disjoint name sets per thread) in a different random order on every
 * rank and waited on in yet another order (wait, timed waits that time out and retry, polls).
 * Names repeat step after step, so after their first step they travel as cached bits; now and
 * then a name changes its count (sometimes its dtype, op, kind or root) on every rank alike and
 * is renegotiated. Every result is checked element by element against the exact expectation
 * (mt_value's ranges keep every sum, mean and product exact, fp16 and bf16 included), and every
 * out-of-place input is checked unmodified.
 *
 * Memory must stay flat: the resident set after a warm-up (every name used once, a few steps
 * more) and at the end may differ by at most --rss-limit-mib (default 8). The test's own buffers
 * are allocated and touched before the warm-up, so the growth measured is herd's (and MPI's).
 *
 * Everything is a function of the seed: the plan (which names a step submits, their attributes,
 * the renegotiations) comes from a stream shared by every rank, the orders and wait styles from
 * a stream per rank. Arguments (all optional):
 *   --ops N           collective operations in all, default 100000 (every rank submits each)
 *   --seed S          the seed (printed; default 1)
 *   --threads T       submitting threads per rank, 1-8 (default 3)
 *   --rss-limit-mib M allowed resident-set growth from warm-up to the end (default 8)
 * ctest runs the full 100,000 on 3 and on 4 ranks (CMakeLists.txt). */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "herd.h"
#include "mpi_test.h"

/* Size classes: most tensors are small, a few medium, rarely a huge one. A tensor keeps its
 * class for the whole run (its buffers are allocated once at the class's maximum); a
 * renegotiation picks a new count within the class. */
enum { CLASS_TINY, CLASS_SMALL, CLASS_MEDIUM, CLASS_LARGE, CLASS_HUGE, NCLASSES };
static const int64_t class_lo[NCLASSES] = {0, 65, 1025, 16385, 65537};
static const int64_t class_hi[NCLASSES] = {64, 1024, 16384, 65536, 524288};
/* Percent chance that a step submits a tensor of the class. */
static const int class_pct[NCLASSES] = {85, 75, 40, 12, 2};
/* Tensors of each class per thread. */
static const int class_per_thread[NCLASSES] = {28, 12, 5, 2, 1};
enum { PER_THREAD = 48, MAX_THREADS = 8 };
/* Per mille of a step's submissions that first change their attributes (renegotiation). */
enum { RENEGOTIATE_PER_MILLE = 8 };

typedef struct tensor {
    char name[48];
    int cls;
    void *a, *b; /* a: input (and the buffer when in place); b: output when out of place */
    int broadcast, dtype, op, root, in_place;
    int64_t count;
    uint64_t salt;
    herd_handle_t handle;
} tensor_t;

typedef struct worker {
    int id;
    pthread_t thread;
    tensor_t tensors[PER_THREAD];
    mt_rng_t shared; /* the plan: the same stream on every rank */
    mt_rng_t local;  /* this rank's orders and wait styles */
    int64_t step, done, quota;
    int64_t allreduces, broadcasts, renegotiations, timed_out_waits, polls;
    int64_t stop_at; /* this phase ends once `done` reaches it */
} worker_t;

static struct {
    int64_t ops;
    uint64_t seed;
    int threads;
    double rss_limit_mib;
} opt = {100000, 1, 3, 8.0};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int64_t rss_bytes(void)
{
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    int n = fscanf(f, "%ld %ld", &pages_total, &pages_resident);
    fclose(f);
    return n == 2 ? (int64_t)pages_resident * sysconf(_SC_PAGESIZE) : -1;
}

/* New attributes for `t` from the shared stream (identical on every rank). */
static void pick_attrs(tensor_t *t, mt_rng_t *shared)
{
    t->broadcast = mt_rng_range(shared, 0, 6) == 0;
    t->dtype = (int)mt_rng_range(shared, 0, MT_NUM_DTYPES - 1);
    t->op = t->broadcast ? MT_BCAST : (int)mt_rng_range(shared, 0, MT_NUM_OPS - 1);
    t->root = (int)mt_rng_range(shared, 0, mt_size - 1);
    t->in_place = t->broadcast || mt_rng_range(shared, 0, 1) == 0;
    int64_t lo = class_lo[t->cls];
    /* Empty and one-element tensors are worth a few percent of the tiny ones. */
    if (t->cls == CLASS_TINY && mt_rng_range(shared, 0, 19) == 0)
        t->count = mt_rng_range(shared, 0, 1);
    else
        t->count = mt_rng_range(shared, lo, class_hi[t->cls]);
}

static void make_tensors(worker_t *w)
{
    int k = 0;
    for (int cls = 0; cls < NCLASSES; cls++) {
        for (int i = 0; i < class_per_thread[cls]; i++, k++) {
            tensor_t *t = &w->tensors[k];
            memset(t, 0, sizeof *t);
            t->cls = cls;
            snprintf(t->name, sizeof t->name, "soak.t%d.%c%02d", w->id, "tsmlh"[cls], i);
            /* Room for the class's largest count in the widest dtype; touched now so that the
             * resident set grows only with what herd and MPI allocate. */
            size_t bytes = (size_t)class_hi[cls] * 8;
            t->a = mt_alloc(bytes);
            t->b = mt_alloc(bytes);
            pick_attrs(t, &w->shared);
        }
    }
    MT_TCHECK(k == PER_THREAD);
    /* Declare part of the names, in a different order on every rank (rank 0's order decides
     * the priorities). */
    int64_t order[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++)
        order[i] = i;
    mt_shuffle(&w->local, order, PER_THREAD);
    for (int i = 0; i < PER_THREAD / 2; i++) {
        int64_t key = -1;
        MT_TCHECK(herd_declare_tensor(w->tensors[order[i]].name, &key) == HERD_OK && key >= 0);
    }
}

static void fill(tensor_t *t)
{
    size_t bytes = (size_t)t->count * mt_dtype_size(t->dtype);
    if (t->broadcast) {
        if (mt_rank == t->root)
            mt_fill(t->dtype, MT_BCAST, mt_rank, t->salt, t->a, t->count);
        else
            memset(t->a, 0xa5, bytes);
        return;
    }
    mt_fill(t->dtype, t->op, mt_rank, t->salt, t->a, t->count);
    if (!t->in_place)
        memset(t->b, 0x5a, bytes);
}

/* The input of an out-of-place allreduce must be exactly what this rank put there. */
static int64_t input_changed(const tensor_t *t)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < t->count; i++) {
        int64_t want = mt_value(t->dtype, t->op, mt_rank, i, t->salt);
        int ok = mt_is_float(t->dtype) ? mt_get_double(t->dtype, t->a, i) == (double)want
                                       : mt_get_int(t->dtype, t->a, i) == want;
        bad += !ok;
    }
    if (bad > 0)
        fprintf(stderr, "[rank %d] %s: out-of-place input changed in %lld of %lld elements\n",
                mt_rank, t->name, (long long)bad, (long long)t->count);
    return bad;
}

static int submit(tensor_t *t)
{
    int rc = t->broadcast ? herd_broadcast(t->name, t->a, t->count, t->dtype, t->root,
                                           HERD_DEVICE_CPU, &t->handle)
                          : herd_push_pull(t->name, t->a, t->in_place ? t->a : t->b, t->count,
                                           t->dtype, t->op, HERD_DEVICE_CPU, &t->handle);
    if (rc != HERD_OK)
        fprintf(stderr, "[rank %d] submit %s (%s %s x%lld): %s: %s\n", mt_rank, t->name,
                mt_dtype_name(t->dtype), mt_op_name(t->op), (long long)t->count,
                herd_status_name(rc), herd_last_error());
    return rc;
}

/* Waits in one of three styles chosen by the local stream. */
static int complete(worker_t *w, tensor_t *t)
{
    int64_t style = mt_rng_range(&w->local, 0, 9);
    if (style < 7)
        return mt_wait(t->handle, t->name);
    if (style < 9) {
        /* Short deadlines: a wait's own timeout leaves the handle valid; wait again. */
        int64_t ms = mt_rng_range(&w->local, 0, 3);
        for (;;) {
            int rc = herd_wait_handle(t->handle, ms);
            if (rc != HERD_ERR_TIMEOUT)
                return rc;
            if (herd_poll_handle(t->handle) == HERD_ERR_NOT_FOUND)
                return rc; /* the operation's own timeout (stall inspector): released */
            w->timed_out_waits++;
            ms = ms < 50 ? ms * 2 + 1 : ms;
        }
    }
    w->polls++;
    int rc;
    while ((rc = herd_poll_handle(t->handle)) == HERD_INPROGRESS)
        sleep_us(50);
    int again = herd_wait_handle(t->handle, 0);
    MT_TCHECK(again == rc);
    return again;
}

static void check(const tensor_t *t, int rc)
{
    MT_TCHECK(rc == HERD_OK);
    if (rc != HERD_OK) {
        fprintf(stderr, "[rank %d] %s: %s: %s\n", mt_rank, t->name, herd_status_name(rc),
                herd_last_error());
        return;
    }
    int64_t bad;
    if (t->broadcast) {
        bad = mt_verify_broadcast(t->dtype, t->root, t->salt, t->a, t->count, t->name);
    } else {
        bad = mt_verify_allreduce(t->dtype, t->op, mt_size, t->salt, t->in_place ? t->a : t->b,
                                  t->count, t->name);
        if (!t->in_place)
            bad += input_changed(t);
    }
    MT_TCHECK(bad == 0);
}

/* One step of one thread: the plan from the shared stream, orders from the local one. */
static void run_step(worker_t *w)
{
    int64_t chosen[PER_THREAD];
    int64_t n = 0;
    for (int k = 0; k < PER_THREAD; k++) {
        tensor_t *t = &w->tensors[k];
        /* Consume the shared stream identically whatever is decided. */
        int64_t roll = mt_rng_range(&w->shared, 0, 99);
        int64_t reneg = mt_rng_range(&w->shared, 0, 999);
        int take = w->step == 0 || roll < class_pct[t->cls];
        if (!take)
            continue;
        if (w->step > 0 && reneg < RENEGOTIATE_PER_MILLE) {
            /* Mostly a new count; a third of the time every attribute is drawn again. */
            if (mt_rng_range(&w->shared, 0, 2) == 0) {
                pick_attrs(t, &w->shared);
            } else {
                int64_t c = mt_rng_range(&w->shared, class_lo[t->cls], class_hi[t->cls]);
                t->count = c == t->count ? (c > class_lo[t->cls] ? c - 1 : c + 1) : c;
            }
            w->renegotiations++;
        }
        t->salt = mt_mix(opt.seed ^ mt_mix((uint64_t)w->id << 48 ^ (uint64_t)w->step << 8 ^
                                           (uint64_t)k));
        chosen[n++] = k;
    }
    for (int64_t i = 0; i < n; i++)
        fill(&w->tensors[chosen[i]]);
    /* Now and then this rank is late, by a different amount on every rank. */
    if (mt_rng_range(&w->local, 0, 49) == 0)
        sleep_us((long)mt_rng_range(&w->local, 0, 3000));
    mt_shuffle(&w->local, chosen, n);
    int ok[PER_THREAD];
    for (int64_t i = 0; i < n; i++) {
        tensor_t *t = &w->tensors[chosen[i]];
        ok[chosen[i]] = submit(t) == HERD_OK;
        MT_TCHECK(ok[chosen[i]]);
        if (t->broadcast)
            w->broadcasts++;
        else
            w->allreduces++;
    }
    mt_shuffle(&w->local, chosen, n);
    for (int64_t i = 0; i < n; i++) {
        tensor_t *t = &w->tensors[chosen[i]];
        if (ok[chosen[i]])
            check(t, complete(w, t));
    }
    w->done += n;
    w->step++;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    while (w->done < w->stop_at)
        run_step(w);
    return NULL;
}

/* Runs every worker until it has done `per_mille` of its quota. */
static void run_phase(worker_t *workers, int64_t per_mille)
{
    int started[MAX_THREADS] = {0};
    for (int i = 0; i < opt.threads; i++) {
        worker_t *w = &workers[i];
        w->stop_at = w->quota * per_mille / 1000;
        started[i] = pthread_create(&w->thread, NULL, worker_main, w) == 0;
        MT_CHECK(started[i]);
    }
    for (int i = 0; i < opt.threads; i++)
        if (started[i])
            pthread_join(workers[i].thread, NULL);
}

static void test_soak(void)
{
    worker_t *workers = calloc((size_t)opt.threads, sizeof *workers);
    MT_CHECK(workers != NULL);
    if (workers == NULL)
        return;
    for (int i = 0; i < opt.threads; i++) {
        worker_t *w = &workers[i];
        w->id = i;
        w->shared.state = mt_mix(opt.seed * 1000 + (uint64_t)i);
        w->local.state = mt_mix(mt_mix(opt.seed) ^ ((uint64_t)mt_rank << 32 | (uint64_t)i));
        w->quota = opt.ops / opt.threads + (i < opt.ops % opt.threads ? 1 : 0);
        make_tensors(w);
    }
    long failures_before = mt_thread_failures();

    /* Warm-up: step 0 submits every name; then up to 5% of the run. */
    double t0 = now_s();
    run_phase(workers, 50);
    int64_t rss_warm = rss_bytes();
    int64_t warm_ops = 0;
    for (int i = 0; i < opt.threads; i++)
        warm_ops += workers[i].done;
    double t1 = now_s();
    run_phase(workers, 1000);
    double t2 = now_s();
    int64_t rss_end = rss_bytes();

    worker_t all = {0}; /* the sums over this rank's workers */
    for (int i = 0; i < opt.threads; i++) {
        all.done += workers[i].done;
        all.allreduces += workers[i].allreduces;
        all.broadcasts += workers[i].broadcasts;
        all.renegotiations += workers[i].renegotiations;
        all.timed_out_waits += workers[i].timed_out_waits;
        all.polls += workers[i].polls;
        all.step += workers[i].step;
    }
    double growth_mib = (double)(rss_end - rss_warm) / (1024.0 * 1024.0);
    MT_CHECK(rss_warm > 0 && rss_end > 0);
    if (growth_mib > opt.rss_limit_mib)
        fprintf(stderr, "[rank %d] resident set grew by %.2f MiB (%.1f -> %.1f MiB), limit %.1f "
                "MiB\n", mt_rank, growth_mib, (double)rss_warm / 1048576.0,
                (double)rss_end / 1048576.0, opt.rss_limit_mib);
    MT_CHECK(growth_mib <= opt.rss_limit_mib);
    MT_CHECK(mt_thread_failures() == failures_before);
    /* Every rank ran the same plan. */
    int64_t plan[2] = {all.done, all.renegotiations}, plan_min[2], plan_max[2];
    MPI_Allreduce(plan, plan_min, 2, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(plan, plan_max, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    MT_CHECK(plan_min[0] == plan_max[0] && plan_min[1] == plan_max[1]);
    MT_CHECK(all.done >= opt.ops && all.done == all.allreduces + all.broadcasts);

    double worst_growth = 0, secs = t2 - t0;
    MPI_Reduce(&growth_mib, &worst_growth, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    double slowest = 0;
    MPI_Reduce(&secs, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (mt_rank == 0) {
        printf("\nsoak: seed %llu, %d ranks x %d threads: %lld operations (%lld allreduces, "
               "%lld broadcasts, %lld renegotiations) in %lld thread steps, %.1f s: %.0f ops/s "
               "(%.0f ops/s after warm-up); %lld timed-out waits retried, %lld polled\n",
               (unsigned long long)opt.seed, mt_size, opt.threads, (long long)all.done,
               (long long)all.allreduces, (long long)all.broadcasts,
               (long long)all.renegotiations, (long long)all.step, slowest,
               (double)all.done / slowest, (double)(all.done - warm_ops) / (t2 - t1),
               (long long)all.timed_out_waits, (long long)all.polls);
        printf("soak: resident set after warm-up %.1f MiB, at the end %.1f MiB; largest growth "
               "on any rank %.2f MiB (limit %.1f MiB)\n", (double)rss_warm / 1048576.0,
               (double)rss_end / 1048576.0, worst_growth, opt.rss_limit_mib);
        fflush(stdout);
    }
    for (int i = 0; i < opt.threads; i++)
        for (int k = 0; k < PER_THREAD; k++) {
            free(workers[i].tensors[k].a);
            free(workers[i].tensors[k].b);
        }
    free(workers);
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            goto usage;
        char *end = NULL;
        if (strcmp(argv[i], "--ops") == 0)
            opt.ops = strtoll(v, &end, 10);
        else if (strcmp(argv[i], "--seed") == 0)
            opt.seed = strtoull(v, &end, 10);
        else if (strcmp(argv[i], "--threads") == 0)
            opt.threads = (int)strtol(v, &end, 10);
        else if (strcmp(argv[i], "--rss-limit-mib") == 0)
            opt.rss_limit_mib = strtod(v, &end);
        else
            goto usage;
        if (end == v || *end != '\0')
            goto usage;
        i++;
    }
    if (opt.ops < 1 || opt.threads < 1 || opt.threads > MAX_THREADS || opt.rss_limit_mib < 0)
        goto usage;
    return 0;
usage:
    fprintf(stderr, "usage: %s [--ops N] [--seed S] [--threads 1-%d] [--rss-limit-mib M]\n",
            argv[0], MAX_THREADS);
    return -1;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0)
        return 2;
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (rank == NULL || strcmp(rank, "0") == 0)
        printf("soak: seed %llu (--seed to change), %lld operations, %d threads per rank\n",
               (unsigned long long)opt.seed, (long long)opt.ops, opt.threads);
    static const mt_test_t tests[] = {{"soak", test_soak}};
    return mt_main(argc, argv, "soak", tests, 1, MT_HERD_OWNS_MPI);
}
