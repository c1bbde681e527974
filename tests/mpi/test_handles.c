/* test_handles.c - herd_declare_tensor (keys, priority order) and handle life: poll reports
 * HERD_INPROGRESS or the final status and never releases; wait releases exactly once; a wait
 * that times out leaves the handle valid; an error stays in the handle until it is waited. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herd.h"
#include "mpi_test.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- declare ------------------------------------------------------------------------------- */

static void test_declare_keys(void)
{
    int64_t keys[10];
    char name[32];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "key.%d", i);
        keys[i] = -1;
        MT_CHECK_STATUS(herd_declare_tensor(name, &keys[i]), HERD_OK);
        MT_CHECK(keys[i] >= 0);
        if (i > 0)
            MT_CHECK(keys[i] > keys[i - 1]);
    }
    /* Declaring again returns the same key, in any order. */
    for (int i = 9; i >= 0; i--) {
        snprintf(name, sizeof name, "key.%d", i);
        int64_t again = -1;
        MT_CHECK_STATUS(herd_declare_tensor(name, &again), HERD_OK);
        MT_CHECK(again == keys[i]);
    }
    /* push_pull declares the names it meets; declaring afterwards returns that key, and using
     * a declared name does not change its key. */
    float x[3] = {1, 2, 3};
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("key.auto", x, x, 3, HERD_FLOAT32, HERD_MAX, HERD_DEVICE_CPU,
                                   &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "key.auto"), HERD_OK);
    int64_t auto_key = -1, auto_again = -1, k3 = -1, after = -1;
    MT_CHECK_STATUS(herd_declare_tensor("key.auto", &auto_key), HERD_OK);
    MT_CHECK(auto_key > keys[9]);
    MT_CHECK_STATUS(herd_push_pull("key.3", x, x, 3, HERD_FLOAT32, HERD_MAX, HERD_DEVICE_CPU,
                                   &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "key.3"), HERD_OK);
    MT_CHECK_STATUS(herd_declare_tensor("key.3", &k3), HERD_OK);
    MT_CHECK(k3 == keys[3]);
    MT_CHECK_STATUS(herd_declare_tensor("key.auto", &auto_again), HERD_OK);
    MT_CHECK(auto_again == auto_key);
    MT_CHECK_STATUS(herd_declare_tensor("key.after", &after), HERD_OK);
    MT_CHECK(after > auto_key);
    /* Bad calls. */
    MT_CHECK_STATUS(herd_declare_tensor("key.null", NULL), HERD_ERR_INVALID_ARG);
    int64_t untouched = 1234;
    MT_CHECK_STATUS(herd_declare_tensor(NULL, &untouched), HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_declare_tensor("", &untouched), HERD_ERR_INVALID_ARG);
    MT_CHECK(herd_last_error()[0] != '\0');
}

/* Every rank declares in its own order (rank 0's decides), submits in another and waits in a
 * third: the priorities change the execution order only, never the results. */
static void test_priority_order_keeps_results(void)
{
    enum { N = 40, STEPS = 3 };
    char names[N][32];
    void *bufs[N];
    int dtypes[N], ops[N];
    int64_t counts[N];
    herd_handle_t hs[N];
    int64_t order[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "prio.%02d", i);
        dtypes[i] = i % MT_NUM_DTYPES;
        ops[i] = (i / MT_NUM_DTYPES) % MT_NUM_OPS;
        counts[i] = 1 + (i * 97) % 700;
        bufs[i] = mt_alloc((size_t)counts[i] * 8);
        order[i] = i;
    }
    mt_rng_t rng = {.state = 4000 + (uint64_t)mt_rank};
    mt_shuffle(&rng, order, N);
    int64_t prev = -1;
    for (int i = 0; i < N; i++) {
        int64_t key = -1;
        MT_CHECK_STATUS(herd_declare_tensor(names[order[i]], &key), HERD_OK);
        MT_CHECK(key > prev);
        prev = key;
    }
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < N; i++)
            mt_fill(dtypes[i], ops[i], mt_rank, (uint64_t)(step * 100 + i), bufs[i], counts[i]);
        mt_shuffle(&rng, order, N);
        for (int k = 0; k < N; k++) {
            int i = (int)order[k];
            MT_CHECK_STATUS(herd_push_pull(names[i], bufs[i], bufs[i], counts[i], dtypes[i],
                                           ops[i], HERD_DEVICE_CPU, &hs[i]),
                            HERD_OK);
        }
        mt_shuffle(&rng, order, N);
        for (int k = 0; k < N; k++) {
            int i = (int)order[k];
            MT_CHECK_STATUS(mt_wait(hs[i], names[i]), HERD_OK);
            MT_CHECK(mt_verify_allreduce(dtypes[i], ops[i], mt_size, (uint64_t)(step * 100 + i),
                                         bufs[i], counts[i], names[i]) == 0);
        }
    }
    for (int i = 0; i < N; i++)
        free(bufs[i]);
}

/* ---- poll and wait ------------------------------------------------------------------------ */

/* A successful op: poll keeps answering HERD_OK until the one wait releases it. */
static void test_poll_success_keeps_handle(void)
{
    int32_t x[64];
    mt_fill(HERD_INT32, HERD_SUM, mt_rank, 11, x, 64);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("poll.ok", x, x, 64, HERD_INT32, HERD_SUM, HERD_DEVICE_CPU,
                                   &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_poll_until_done(h, "poll.ok"), HERD_OK);
    for (int i = 0; i < 5; i++)
        MT_CHECK_STATUS(herd_poll_handle(h), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_INT32, HERD_SUM, mt_size, 11, x, 64, "poll.ok") == 0);
    MT_CHECK_STATUS(herd_wait_handle(h, 0), HERD_OK); /* done: timeout 0 still completes */
    MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_NOT_FOUND);
}

/* An op other ranks have not submitted yet: poll says HERD_INPROGRESS, a wait times out and the
 * handle stays valid. Rank 0 submits first while the others sit in a barrier. */
static void test_in_progress_and_timeout(void)
{
    if (mt_size < 2)
        return;
    double x[32];
    mt_fill(HERD_FLOAT64, HERD_MIN, mt_rank, 12, x, 32);
    herd_handle_t h = 0;
    if (mt_rank != 0)
        MPI_Barrier(MPI_COMM_WORLD);
    MT_CHECK_STATUS(herd_push_pull("poll.late", x, x, 32, HERD_FLOAT64, HERD_MIN,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    if (mt_rank == 0) {
        for (int i = 0; i < 5; i++) {
            MT_CHECK_STATUS(herd_poll_handle(h), HERD_INPROGRESS);
            sleep_ms(2);
        }
        MT_CHECK_STATUS(herd_wait_handle(h, 0), HERD_ERR_TIMEOUT);
        MT_CHECK(herd_last_error()[0] != '\0');
        double t0 = now_ms();
        MT_CHECK_STATUS(herd_wait_handle(h, 30), HERD_ERR_TIMEOUT);
        double waited = now_ms() - t0;
        if (waited < 25)
            fprintf(stderr, "[rank 0] wait(30 ms) timed out after %.1f ms\n", waited);
        MT_CHECK(waited >= 25);
        MT_CHECK_STATUS(herd_poll_handle(h), HERD_INPROGRESS);
        MPI_Barrier(MPI_COMM_WORLD);
    }
    MT_CHECK_STATUS(mt_wait(h, "poll.late"), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT64, HERD_MIN, mt_size, 12, x, 32, "poll.late") == 0);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_NOT_FOUND);
}

/* An op that fails (ranks disagree): the error and its message survive every poll, and the one
 * wait that releases the handle reports them too. */
static void test_error_survives_poll(void)
{
    if (mt_size < 2)
        return;
    int32_t x[8] = {0};
    int64_t count = mt_rank == mt_size - 1 ? 7 : 8;
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("poll.bad", x, x, count, HERD_INT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_poll_until_done(h, "poll.bad"), HERD_ERR_MISMATCH);
    for (int i = 0; i < 3; i++) {
        MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_MISMATCH);
        MT_CHECK(mt_last_error_has("poll.bad"));
    }
    /* Another error on this thread in between does not touch the handle's. */
    herd_handle_t junk = 1;
    MT_CHECK_STATUS(herd_push_pull(NULL, x, x, 1, HERD_INT32, HERD_SUM, HERD_DEVICE_CPU, &junk),
                    HERD_ERR_INVALID_ARG);
    MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_MISMATCH);
    MT_CHECK(mt_last_error_has("poll.bad"));
    MT_CHECK_STATUS(herd_wait_handle(h, 0), HERD_ERR_MISMATCH);
    MT_CHECK(mt_last_error_has("poll.bad"));
    MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_NOT_FOUND);
}

/* Many handles polled round-robin until all are done, then each waited once. */
static void test_poll_many(void)
{
    enum { N = 50 };
    int64_t bufs[N][16];
    herd_handle_t hs[N];
    int done[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        mt_fill(HERD_INT64, HERD_MAX, mt_rank, (uint64_t)(600 + i), bufs[i], 16);
        snprintf(name, sizeof name, "poll.many.%d", i);
        MT_CHECK_STATUS(herd_push_pull(name, bufs[i], bufs[i], 16, HERD_INT64, HERD_MAX,
                                       HERD_DEVICE_CPU, &hs[i]),
                        HERD_OK);
        done[i] = 0;
    }
    int left = N;
    for (long spins = 0; left > 0; spins++) {
        for (int i = 0; i < N; i++) {
            if (done[i])
                continue;
            int rc = herd_poll_handle(hs[i]);
            if (rc != HERD_INPROGRESS) {
                MT_CHECK_STATUS(rc, HERD_OK);
                done[i] = 1;
                left--;
            }
        }
        if (spins > 0 && spins % 100000 == 0)
            fprintf(stderr, "[rank %d] poll.many: %d handles still in progress\n", mt_rank,
                    left);
        if (left > 0)
            sleep_ms(0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "poll.many.%d", i);
        MT_CHECK_STATUS(herd_wait_handle(hs[i], 0), HERD_OK);
        MT_CHECK(mt_verify_allreduce(HERD_INT64, HERD_MAX, mt_size, (uint64_t)(600 + i), bufs[i],
                                     16, name) == 0);
    }
}

/* Names are user text: printf directives, quotes, backslashes, control characters, UTF-8,
 * names that are prefixes of each other, the longest allowed. Each is its own tensor. */
static void test_odd_names(void)
{
    char longest[HERD_MAX_NAME_LEN + 1];
    memset(longest, 'L', HERD_MAX_NAME_LEN);
    longest[HERD_MAX_NAME_LEN] = '\0';
    char longest2[HERD_MAX_NAME_LEN + 1];
    memcpy(longest2, longest, sizeof longest);
    longest2[HERD_MAX_NAME_LEN - 1] = 'M'; /* differs in the last byte only */
    const char *names[] = {
        "%s%s%s%n%n", "%d %x %p", "quote\"quote", "back\\slash", "tab\tnew\nline",
        "\x01\x02\x1f", "caf\xc3\xa9.\xe6\x9d\x83\xe9\x87\x8d", " ", "a", "ab", "abc",
        "a.b", "a..b", "{\"json\": 1}", longest, longest2,
    };
    enum { N = sizeof names / sizeof names[0] };
    int64_t bufs[N][3];
    herd_handle_t hs[N];
    int64_t keys[N];
    for (int i = 0; i < N; i++) {
        MT_CHECK_STATUS(herd_declare_tensor(names[i], &keys[i]), HERD_OK);
        for (int j = 0; j < i; j++)
            MT_CHECK(keys[j] != keys[i]);
        mt_fill(HERD_INT64, HERD_SUM, mt_rank, (uint64_t)(900 + i), bufs[i], 3);
    }
    /* Reverse order on odd ranks. */
    for (int k = 0; k < N; k++) {
        int i = mt_rank % 2 ? N - 1 - k : k;
        MT_CHECK_STATUS(herd_push_pull(names[i], bufs[i], bufs[i], 3, HERD_INT64, HERD_SUM,
                                       HERD_DEVICE_CPU, &hs[i]),
                        HERD_OK);
    }
    for (int i = 0; i < N; i++) {
        MT_CHECK_STATUS(mt_wait(hs[i], names[i]), HERD_OK);
        MT_CHECK(mt_verify_allreduce(HERD_INT64, HERD_SUM, mt_size, (uint64_t)(900 + i),
                                     bufs[i], 3, names[i]) == 0);
    }
    /* A mismatch on a name full of printf directives: the message quotes it verbatim. */
    if (mt_size > 1) {
        int64_t count = mt_rank == 0 ? 3 : 2;
        herd_handle_t h = 0;
        MT_CHECK_STATUS(herd_push_pull("%s%n%s", bufs[0], bufs[0], count, HERD_INT64, HERD_SUM,
                                       HERD_DEVICE_CPU, &h),
                        HERD_OK);
        MT_CHECK_STATUS(mt_wait(h, "%s%n%s"), HERD_ERR_MISMATCH);
        MT_CHECK(mt_last_error_has("'%s%n%s'"));
    }
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"declare_keys", test_declare_keys},
        {"priority_order_keeps_results", test_priority_order_keeps_results},
        {"poll_success_keeps_handle", test_poll_success_keeps_handle},
        {"in_progress_and_timeout", test_in_progress_and_timeout},
        {"error_survives_poll", test_error_survives_poll},
        {"poll_many", test_poll_many},
        {"odd_names", test_odd_names},
    };
    return mt_main(argc, argv, "handles", tests, sizeof tests / sizeof tests[0],
                   MT_HERD_OWNS_MPI);
}
