/* test_shutdown.c - shutting down with work pending. One rank submits a tensor ("lonely") that
 * no other rank submits, then every rank calls herd_shutdown: the lonely op must complete with
 * HERD_ERR_SHUTDOWN (its handle outlives the shutdown), while an op every rank submitted just
 * before shutting down completes normally. With one rank, "lonely" is submitted by every rank,
 * so it completes normally too.
 *
 * The program owns MPI here, so herd can start again after each shutdown: a plain wait after
 * shutdown, a thread already blocked in herd_wait_handle when shutdown starts, a lonely op on
 * the last rank that is polled rather than waited, and a lonely op on every rank. */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herd.h"
#include "mpi_test.h"

typedef struct waiter {
    pthread_t thread;
    herd_handle_t handle;
    int status;
    char message[512];
} waiter_t;

static void *waiter_main(void *arg)
{
    waiter_t *w = arg;
    w->status = herd_wait_handle(w->handle, -1);
    snprintf(w->message, sizeof w->message, "%s", herd_last_error());
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* What the lonely op must end with on its rank. */
static int lonely_expected(void)
{
    return mt_size == 1 ? HERD_OK : HERD_ERR_SHUTDOWN;
}

/* One life of herd: `lonely_rank` submits "lonely" (how: 0 wait after shutdown, 1 a thread
 * already waiting, 2 poll after shutdown, then wait); every rank submits "shared". */
static void one_life(int lonely_rank, int how)
{
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    int32_t shared[64], lonely[16];
    mt_fill(HERD_INT32, HERD_SUM, mt_rank, 50 + (uint64_t)how, shared, 64);
    mt_fill(HERD_INT32, HERD_SUM, mt_rank, 60, lonely, 16);
    herd_handle_t hl = 0, hs = 0;
    waiter_t w;
    memset(&w, 0, sizeof w);
    int me = mt_rank == lonely_rank;
    if (me) {
        MT_CHECK_STATUS(herd_push_pull("lonely", lonely, lonely, 16, HERD_INT32, HERD_SUM,
                                       HERD_DEVICE_CPU, &hl),
                        HERD_OK);
        if (how == 1) {
            w.handle = hl;
            MT_CHECK(pthread_create(&w.thread, NULL, waiter_main, &w) == 0);
            sleep_ms(10); /* let it block in the wait */
        }
    }
    MT_CHECK_STATUS(herd_push_pull("shared", shared, shared, 64, HERD_INT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &hs),
                    HERD_OK);
    if (me && mt_size > 1)
        MT_CHECK(herd_poll_handle(hl) == HERD_INPROGRESS);

    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    MT_CHECK(herd_initialized() == 0);

    /* Every rank submitted "shared" before shutting down: it completed normally. */
    MT_CHECK_STATUS(herd_wait_handle(hs, -1), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_INT32, HERD_SUM, mt_size, 50 + (uint64_t)how, shared, 64,
                                 "shared") == 0);
    if (!me)
        return;
    int rc;
    const char *message;
    if (how == 1) {
        pthread_join(w.thread, NULL);
        rc = w.status;
        message = w.message;
    } else {
        if (how == 2) {
            MT_CHECK_STATUS(herd_poll_handle(hl), lonely_expected());
            MT_CHECK_STATUS(herd_poll_handle(hl), lonely_expected());
        }
        rc = herd_wait_handle(hl, -1);
        message = herd_last_error();
    }
    MT_CHECK_STATUS(rc, lonely_expected());
    if (rc == HERD_ERR_SHUTDOWN) {
        if (strstr(message, "lonely") == NULL)
            fprintf(stderr, "[rank %d] the shutdown message does not name 'lonely': '%s'\n",
                    mt_rank, message);
        MT_CHECK(strstr(message, "lonely") != NULL);
    } else if (rc == HERD_OK) {
        MT_CHECK(mt_verify_allreduce(HERD_INT32, HERD_SUM, mt_size, 60, lonely, 16, "lonely") ==
                 0);
    }
    MT_CHECK_STATUS(herd_wait_handle(hl, -1), HERD_ERR_NOT_FOUND);
}

static void test_wait_after_shutdown(void)
{
    one_life(0, 0);
}

static void test_waiter_woken_by_shutdown(void)
{
    one_life(0, 1);
}

static void test_poll_after_shutdown(void)
{
    one_life(mt_size - 1, 2);
}

/* Several lonely ops, on every rank a different one, some waited from threads. */
static void test_every_rank_lonely(void)
{
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    enum { N = 5 };
    int32_t bufs[N][8];
    herd_handle_t hs[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        mt_fill(HERD_INT32, HERD_MAX, mt_rank, (uint64_t)(70 + i), bufs[i], 8);
        snprintf(name, sizeof name, "alone.r%d.%d", mt_rank, i);
        MT_CHECK_STATUS(herd_push_pull(name, bufs[i], bufs[i], 8, HERD_INT32, HERD_MAX,
                                       HERD_DEVICE_CPU, &hs[i]),
                        HERD_OK);
    }
    waiter_t w;
    memset(&w, 0, sizeof w);
    w.handle = hs[0];
    MT_CHECK(pthread_create(&w.thread, NULL, waiter_main, &w) == 0);
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    pthread_join(w.thread, NULL);
    MT_CHECK_STATUS(w.status, lonely_expected());
    for (int i = 1; i < N; i++)
        MT_CHECK_STATUS(herd_wait_handle(hs[i], -1), lonely_expected());
    if (mt_size == 1)
        for (int i = 0; i < N; i++)
            MT_CHECK(mt_verify_allreduce(HERD_INT32, HERD_MAX, 1, (uint64_t)(70 + i), bufs[i], 8,
                                         "alone") == 0);
}

/* Many short lives: every rank submits a burst of ops and shuts down at once. Every op was
 * submitted by every rank before herd_shutdown, so every one must complete normally, whatever
 * the coordinator was doing when the burst and the shutdown arrived. */
static void test_burst_then_shutdown(void)
{
    enum { LIVES = 400, OPS = 20 };
    long failed = 0, wrong = 0;
    for (int life = 0; life < LIVES; life++) {
        int rc = herd_init();
        MT_CHECK_STATUS(rc, HERD_OK);
        if (rc != HERD_OK)
            return;
        int32_t x[OPS][4];
        herd_handle_t h[OPS];
        for (int i = 0; i < OPS; i++) {
            char name[32];
            snprintf(name, sizeof name, "burst.%d", i);
            for (int j = 0; j < 4; j++)
                x[i][j] = mt_rank + j + i;
            if (herd_push_pull(name, x[i], x[i], 4, HERD_INT32, HERD_SUM, HERD_DEVICE_CPU,
                               &h[i]) != HERD_OK)
                failed++;
        }
        MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
        for (int i = 0; i < OPS; i++) {
            rc = herd_wait_handle(h[i], -1);
            if (rc != HERD_OK) {
                if (failed < 3)
                    fprintf(stderr, "[rank %d] life %d: 'burst.%d' submitted by every rank "
                            "before herd_shutdown ended with %s: %s\n", mt_rank, life, i,
                            herd_status_name(rc), herd_last_error());
                failed++;
                continue;
            }
            for (int j = 0; j < 4; j++)
                wrong += x[i][j] != mt_size * (mt_size - 1) / 2 + mt_size * (j + i);
        }
    }
    if (failed > 0)
        fprintf(stderr, "[rank %d] %ld of %d ops failed\n", mt_rank, failed, LIVES * OPS);
    MT_CHECK(failed == 0);
    MT_CHECK(wrong == 0);
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"wait_after_shutdown", test_wait_after_shutdown},
        {"waiter_woken_by_shutdown", test_waiter_woken_by_shutdown},
        {"poll_after_shutdown", test_poll_after_shutdown},
        {"every_rank_lonely", test_every_rank_lonely},
        {"burst_then_shutdown", test_burst_then_shutdown},
    };
    return mt_main(argc, argv, "shutdown_pending", tests, sizeof tests / sizeof tests[0],
                   MT_USER_MPI_NO_INIT);
}
