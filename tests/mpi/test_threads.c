/* test_threads.c - several threads per rank submitting and waiting at once, each on its own
 * set of names; two threads waiting on one handle; the per-thread last error. */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herd.h"
#include "mpi_test.h"

enum { NTHREADS = 4, PER_THREAD = 40, NSTEPS = 5 };

typedef struct item {
    char name[64];
    int broadcast, dtype, op, root, in_place;
    int64_t count;
    void *send, *recv;
    uint64_t salt;
    herd_handle_t handle;
} item_t;

typedef struct worker {
    int id;
    pthread_t thread;
    item_t items[PER_THREAD];
} worker_t;

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Thread `id`'s tensors: attributes from a seed shared by every rank. Thread 2 broadcasts. */
static void make_items(worker_t *w)
{
    mt_rng_t rng = {.state = 555 + (uint64_t)w->id};
    for (int k = 0; k < PER_THREAD; k++) {
        item_t *it = &w->items[k];
        memset(it, 0, sizeof *it);
        it->broadcast = w->id == 2;
        it->dtype = (int)mt_rng_range(&rng, 0, MT_NUM_DTYPES - 1);
        it->op = it->broadcast ? MT_BCAST : (int)mt_rng_range(&rng, 0, MT_NUM_OPS - 1);
        it->root = (int)mt_rng_range(&rng, 0, mt_size - 1);
        it->in_place = it->broadcast || (k % 2 == 0);
        it->count = mt_rng_range(&rng, 0, 1500);
        snprintf(it->name, sizeof it->name, "thr%d.%02d", w->id, k);
        size_t bytes = (size_t)it->count * mt_dtype_size(it->dtype);
        it->send = mt_alloc(bytes);
        it->recv = it->in_place ? it->send : mt_alloc(bytes);
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    make_items(w);
    int64_t order[PER_THREAD];
    mt_rng_t rng = {.state = (uint64_t)(mt_rank * 100 + w->id)};
    for (int step = 0; step < NSTEPS; step++) {
        for (int k = 0; k < PER_THREAD; k++) {
            item_t *it = &w->items[k];
            it->salt = mt_mix((uint64_t)(w->id * 100000 + step * 1000 + k));
            int filler = it->broadcast ? MT_BCAST : it->op;
            if (!it->broadcast || mt_rank == it->root)
                mt_fill(it->dtype, filler, mt_rank, it->salt, it->send, it->count);
            else
                memset(it->send, 0xa5, (size_t)it->count * mt_dtype_size(it->dtype));
            order[k] = k;
        }
        /* Stagger the threads differently on every rank. */
        sleep_us((long)mt_rng_range(&rng, 0, 2000));
        mt_shuffle(&rng, order, PER_THREAD);
        for (int k = 0; k < PER_THREAD; k++) {
            item_t *it = &w->items[order[k]];
            int rc = it->broadcast
                         ? herd_broadcast(it->name, it->send, it->count, it->dtype, it->root,
                                          HERD_DEVICE_CPU, &it->handle)
                         : herd_push_pull(it->name, it->send, it->recv, it->count, it->dtype,
                                          it->op, HERD_DEVICE_CPU, &it->handle);
            MT_TCHECK(rc == HERD_OK);
            if (rc != HERD_OK)
                fprintf(stderr, "[rank %d] thread %d: submit %s: %s\n", mt_rank, w->id,
                        it->name, herd_last_error());
        }
        mt_shuffle(&rng, order, PER_THREAD);
        for (int k = 0; k < PER_THREAD; k++) {
            item_t *it = &w->items[order[k]];
            /* Thread 3 polls; the others wait. */
            int rc = w->id == 3 ? mt_poll_until_done(it->handle, it->name)
                                : mt_wait(it->handle, it->name);
            if (w->id == 3)
                MT_TCHECK(herd_wait_handle(it->handle, 0) == rc);
            MT_TCHECK(rc == HERD_OK);
            int64_t bad = it->broadcast ? mt_verify_broadcast(it->dtype, it->root, it->salt,
                                                              it->recv, it->count, it->name)
                                        : mt_verify_allreduce(it->dtype, it->op, mt_size,
                                                              it->salt, it->recv, it->count,
                                                              it->name);
            MT_TCHECK(bad == 0);
        }
    }
    for (int k = 0; k < PER_THREAD; k++) {
        if (!w->items[k].in_place)
            free(w->items[k].recv);
        free(w->items[k].send);
    }
    return NULL;
}

static void test_concurrent_submitters(void)
{
    long before = mt_thread_failures();
    worker_t *workers = calloc(NTHREADS, sizeof *workers);
    for (int t = 0; t < NTHREADS; t++) {
        workers[t].id = t;
        MT_CHECK(pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) == 0);
    }
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(workers[t].thread, NULL);
    free(workers);
    MT_CHECK(mt_thread_failures() == before);
}

typedef struct waiter {
    pthread_t thread;
    herd_handle_t handle;
    int status;
    char message[256];
} waiter_t;

static void *waiter_main(void *arg)
{
    waiter_t *w = arg;
    w->status = herd_wait_handle(w->handle, -1);
    snprintf(w->message, sizeof w->message, "%s", herd_last_error());
    return NULL;
}

/* Two threads wait on one handle: one gets the status, the other HERD_ERR_NOT_FOUND. */
static void test_two_waiters_one_handle(void)
{
    for (int round = 0; round < 5; round++) {
        int32_t *x = mt_alloc(100 * sizeof *x);
        mt_fill(HERD_INT32, HERD_SUM, mt_rank, (uint64_t)(round + 1), x, 100);
        herd_handle_t h = 0;
        waiter_t w[2];
        memset(w, 0, sizeof w);
        /* Rank 0 starts its waiters before any other rank submits, so both really wait. */
        if (mt_rank != 0)
            MPI_Barrier(MPI_COMM_WORLD);
        MT_CHECK_STATUS(herd_push_pull("two.waiters", x, x, 100, HERD_INT32, HERD_SUM,
                                       HERD_DEVICE_CPU, &h),
                        HERD_OK);
        for (int i = 0; i < 2; i++) {
            w[i].handle = h;
            MT_CHECK(pthread_create(&w[i].thread, NULL, waiter_main, &w[i]) == 0);
        }
        if (mt_rank == 0) {
            sleep_us(20000);
            MPI_Barrier(MPI_COMM_WORLD);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(w[i].thread, NULL);
        int ok = (w[0].status == HERD_OK) + (w[1].status == HERD_OK);
        int gone = (w[0].status == HERD_ERR_NOT_FOUND) + (w[1].status == HERD_ERR_NOT_FOUND);
        if (ok != 1 || gone != 1)
            fprintf(stderr, "[rank %d] two waiters got %s and %s\n", mt_rank,
                    herd_status_name(w[0].status), herd_status_name(w[1].status));
        MT_CHECK(ok == 1 && gone == 1);
        for (int i = 0; i < 2; i++)
            if (w[i].status == HERD_ERR_NOT_FOUND)
                MT_CHECK(w[i].message[0] != '\0');
        MT_CHECK(mt_verify_allreduce(HERD_INT32, HERD_SUM, mt_size, (uint64_t)(round + 1), x, 100,
                                     "two.waiters") == 0);
        free(x);
    }
}

typedef struct errthread {
    char seen_at_start[256];
    char seen_after[256];
    int status;
} errthread_t;

static void *error_thread_main(void *arg)
{
    errthread_t *e = arg;
    snprintf(e->seen_at_start, sizeof e->seen_at_start, "%s", herd_last_error());
    herd_handle_t h = 1;
    e->status = herd_push_pull("thread.error", NULL, NULL, 5, HERD_FLOAT32, HERD_SUM,
                               HERD_DEVICE_CPU, &h);
    snprintf(e->seen_after, sizeof e->seen_after, "%s", herd_last_error());
    return NULL;
}

/* herd_last_error() is per thread. */
static void test_last_error_per_thread(void)
{
    herd_handle_t h = 1;
    MT_CHECK_STATUS(herd_push_pull("main.error", NULL, NULL, 7, HERD_INT8, 99, HERD_DEVICE_CPU,
                                   &h),
                    HERD_ERR_INVALID_ARG);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", herd_last_error());
    MT_CHECK(strstr(mine, "main.error") != NULL);
    errthread_t e;
    memset(&e, 0, sizeof e);
    pthread_t t;
    MT_CHECK(pthread_create(&t, NULL, error_thread_main, &e) == 0);
    pthread_join(t, NULL);
    MT_CHECK(e.seen_at_start[0] == '\0');
    MT_CHECK(e.status == HERD_ERR_INVALID_ARG);
    MT_CHECK(strstr(e.seen_after, "thread.error") != NULL);
    MT_CHECK(strcmp(herd_last_error(), mine) == 0);
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"concurrent_submitters", test_concurrent_submitters},
        {"two_waiters_one_handle", test_two_waiters_one_handle},
        {"last_error_per_thread", test_last_error_per_thread},
    };
    return mt_main(argc, argv, "threads", tests, sizeof tests / sizeof tests[0],
                   MT_HERD_OWNS_MPI);
}
