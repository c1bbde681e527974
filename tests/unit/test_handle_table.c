/* test_handle_table.c - handles with generations: the alloc/complete/poll/wait life cycle, stale
 * and forged handles, a full table, timeouts, error messages travelling from the completer to the
 * waiter, and the wait protocol under threads (no lost wake-ups, one winner per handle). */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handle_table.h"
#include "status.h"
#include "unit.h"
#include "util/clock.h"

#define H(gen, index) ((herd_handle_t)(((int64_t)(gen) << HERD_HANDLE_INDEX_BITS) | (index)))

static void table_init(herd_handle_table_t *t, uint32_t capacity)
{
    memset(t, 0, sizeof *t);
    UNIT_EQ_INT_FATAL(herd__handles_init(t, capacity), HERD_OK);
}

static herd_handle_t alloc_one(herd_handle_table_t *t, uint32_t *index_out)
{
    herd_handle_t h = 0;
    uint32_t index = HERD_NO_INDEX;
    UNIT_EQ_INT_FATAL(herd__handles_alloc(t, &h, &index), HERD_OK);
    *index_out = index;
    return h;
}

static void expect_not_found(herd_handle_table_t *t, herd_handle_t h)
{
    char want[128];
    snprintf(want, sizeof want, "handle %lld is unknown, stale or already waited on", (long long)h);
    herd__status_clear();
    UNIT_EQ_INT(herd__handles_poll(t, h), HERD_ERR_NOT_FOUND);
    UNIT_EQ_STR(herd_last_error(), want);
    herd__status_clear();
    UNIT_EQ_INT(herd__handles_wait(t, h, 0), HERD_ERR_NOT_FOUND);
    UNIT_EQ_STR(herd_last_error(), want);
}

/* ---- single thread --------------------------------------------------------------------------- */

static void test_init_bounds(void)
{
    herd_handle_table_t t;
    memset(&t, 0, sizeof t);
    UNIT_EQ_INT(herd__handles_init(&t, 0), HERD_ERR_INVALID_ARG);
    UNIT_EQ_INT(herd__handles_init(&t, HERD_MAX_HANDLE_CAPACITY + 1), HERD_ERR_INVALID_ARG);
    UNIT_EQ_INT(HERD_MAX_HANDLE_CAPACITY < (1 << HERD_HANDLE_INDEX_BITS), 1);
    UNIT_EQ_INT(herd__handles_init(&t, 1), HERD_OK);
    UNIT_EQ_INT(t.capacity, 1);
    UNIT_EQ_INT(herd__handles_in_use(&t), 0);
    herd__handles_destroy(&t);
    herd__handles_destroy(&t); /* idempotent */
    UNIT_EQ_INT(t.slots == NULL, 1);
}

static void test_round_trip(void)
{
    herd_handle_table_t t;
    table_init(&t, 8);
    uint32_t index;
    herd_handle_t h = alloc_one(&t, &index);
    UNIT_EQ_INT(index, 0);
    UNIT_EQ_INT(h, H(1, 0));
    UNIT_EQ_INT(herd__handles_in_use(&t), 1);
    /* The slot carries the request: it is the submitter's to fill. */
    herd_request_t *r = herd__handles_request(&t, index);
    UNIT_EQ_INT(r == &t.slots[index].request, 1);
    r->count = 42;

    UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_INPROGRESS);
    herd__handles_complete(&t, index, HERD_OK, NULL);
    herd__handles_notify(&t);
    UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_OK);
    UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_OK);
    UNIT_EQ_INT(herd__handles_in_use(&t), 1);
    UNIT_EQ_INT(herd__handles_request(&t, index)->count, 42);

    herd__status_set(HERD_ERR_INTERNAL, "stale text");
    UNIT_EQ_INT(herd__handles_wait(&t, h, -1), HERD_OK);
    UNIT_EQ_STR(herd_last_error(), ""); /* success clears the last error */
    UNIT_EQ_INT(herd__handles_in_use(&t), 0);
    expect_not_found(&t, h); /* wait released it: a second wait is NOT_FOUND */
    herd__handles_destroy(&t);
}

static void test_handles_are_never_zero_and_distinct(void)
{
    enum { N = 16 };
    herd_handle_table_t t;
    table_init(&t, N);
    herd_handle_t h[N];
    int seen_index[N] = {0};
    for (int i = 0; i < N; i++) {
        uint32_t index;
        h[i] = alloc_one(&t, &index);
        UNIT_EQ_INT(h[i] > 0, 1);
        UNIT_EQ_INT(index < N, 1);
        if (index < N)
            seen_index[index]++;
        UNIT_EQ_INT(h[i], H(1, index));
        for (int j = 0; j < i; j++)
            if (h[j] == h[i])
                UNIT_FAIL("handles %d and %d are both %lld", j, i, (long long)h[i]);
    }
    for (int i = 0; i < N; i++)
        UNIT_EQ_INT(seen_index[i], 1);
    /* Each slot reused N times: every handle is new, none is 0. */
    for (int round = 2; round <= 5; round++) {
        for (int i = 0; i < N; i++) {
            uint32_t index = (uint32_t)(h[i] & ((1 << HERD_HANDLE_INDEX_BITS) - 1));
            herd__handles_complete(&t, index, HERD_OK, NULL);
            UNIT_EQ_INT(herd__handles_wait(&t, h[i], 0), HERD_OK);
            herd_handle_t again = alloc_one(&t, &index);
            UNIT_EQ_INT(again, H(round, index));
            UNIT_EQ_INT(again != h[i], 1);
            h[i] = again;
        }
    }
    herd__handles_destroy(&t);
}

static void test_poll_never_releases(void)
{
    herd_handle_table_t t;
    table_init(&t, 2);
    uint32_t index;
    herd_handle_t h = alloc_one(&t, &index);
    herd__handles_complete(&t, index, HERD_ERR_MISMATCH, "tensor 'w': ranks disagree");
    for (int i = 0; i < 3; i++) {
        herd__status_clear();
        UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_ERR_MISMATCH);
        UNIT_EQ_STR(herd_last_error(), "tensor 'w': ranks disagree");
        UNIT_EQ_INT(herd__handles_in_use(&t), 1);
    }
    herd__status_clear();
    UNIT_EQ_INT(herd__handles_wait(&t, h, -1), HERD_ERR_MISMATCH);
    UNIT_EQ_STR(herd_last_error(), "tensor 'w': ranks disagree");
    expect_not_found(&t, h);
    herd__handles_destroy(&t);
}

static void test_stale_handle_after_slot_reuse(void)
{
    herd_handle_table_t t;
    table_init(&t, 1);
    uint32_t index;
    herd_handle_t h1 = alloc_one(&t, &index);
    herd__handles_complete(&t, index, HERD_OK, NULL);
    UNIT_EQ_INT(herd__handles_wait(&t, h1, -1), HERD_OK);

    herd_handle_t h2 = alloc_one(&t, &index);
    UNIT_EQ_INT(index, 0); /* the same slot */
    UNIT_EQ_INT(h1, H(1, 0));
    UNIT_EQ_INT(h2, H(2, 0));
    expect_not_found(&t, h1);
    UNIT_EQ_INT(herd__handles_poll(&t, h2), HERD_INPROGRESS); /* h1's misuse did not touch it */
    herd__handles_complete(&t, index, HERD_ERR_SHUTDOWN, "bye");
    expect_not_found(&t, h1); /* still stale once the new occupant has completed */
    UNIT_EQ_INT(herd__handles_wait(&t, h2, -1), HERD_ERR_SHUTDOWN);

    /* A cancelled slot advances its generation too. */
    herd_handle_t h3 = alloc_one(&t, &index);
    UNIT_EQ_INT(h3, H(3, 0));
    herd__handles_cancel(&t, index);
    UNIT_EQ_INT(herd__handles_in_use(&t), 0);
    expect_not_found(&t, h3);
    herd_handle_t h4 = alloc_one(&t, &index);
    UNIT_EQ_INT(h4, H(4, 0));
    herd__handles_cancel(&t, index);
    herd__handles_destroy(&t);
}

static void test_generation_wraps_to_a_positive_handle(void)
{
    herd_handle_table_t t;
    table_init(&t, 2);
    const uint64_t last = (UINT64_C(1) << (63 - HERD_HANDLE_INDEX_BITS)) - 1;
    atomic_store(&t.slots[0].generation, last);
    uint32_t index;
    herd_handle_t h = alloc_one(&t, &index);
    UNIT_EQ_INT(index, 0);
    UNIT_EQ_INT(h, H(last, 0));
    UNIT_EQ_INT(h > 0, 1);
    herd__handles_complete(&t, index, HERD_OK, NULL);
    UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_OK);
    UNIT_EQ_INT(herd__handles_wait(&t, h, -1), HERD_OK);
    herd_handle_t next = alloc_one(&t, &index);
    UNIT_EQ_INT(index, 0);
    UNIT_EQ_INT(next, H(1, 0));
    expect_not_found(&t, h);
    herd__handles_cancel(&t, index);
    herd__handles_destroy(&t);
}

static void test_forged_handles(void)
{
    herd_handle_table_t t;
    table_init(&t, 4);
    uint32_t index;
    herd_handle_t live = alloc_one(&t, &index);
    UNIT_EQ_INT(live, H(1, 0));
    const herd_handle_t forged[] = {
        0,
        -1,
        INT64_MIN,
        INT64_MAX,
        -live,
        H(1, 4),        /* index == capacity */
        H(1, 0xFFFFFF), /* largest index the bits can hold */
        H(0, 0),        /* generation 0 never exists */
        H(0, 1),
        H(2, 0), /* a generation the live slot has not reached */
        H(1, 1), /* right generation, but slot 1 was never allocated */
        H(1, 3),
        live | (INT64_C(1) << 62),
    };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++)
        expect_not_found(&t, forged[i]);
    /* None of that disturbed the live handle. */
    UNIT_EQ_INT(herd__handles_poll(&t, live), HERD_INPROGRESS);
    UNIT_EQ_INT(herd__handles_in_use(&t), 1);
    herd__handles_complete(&t, index, HERD_OK, NULL);
    UNIT_EQ_INT(herd__handles_wait(&t, live, 0), HERD_OK);
    herd__handles_destroy(&t);
}

static void test_table_full(void)
{
    enum { CAP = 4 };
    herd_handle_table_t t;
    table_init(&t, CAP);
    herd_handle_t h[CAP];
    uint32_t idx[CAP];
    for (int i = 0; i < CAP; i++)
        h[i] = alloc_one(&t, &idx[i]);
    herd_handle_t extra = 12345;
    uint32_t extra_index = 777;
    herd__status_clear();
    UNIT_EQ_INT(herd__handles_alloc(&t, &extra, &extra_index), HERD_ERR_NO_MEMORY);
    UNIT_EQ_STR(herd_last_error(), "all 4 operation slots are in flight: wait on some handles "
                                   "first, or raise HERD_MAX_HANDLES");
    UNIT_EQ_INT(extra, 12345); /* a failed call writes nothing */
    UNIT_EQ_INT(extra_index, 777);
    UNIT_EQ_INT(herd__handles_in_use(&t), CAP);

    /* Releasing one makes room again, in that very slot. */
    herd__handles_complete(&t, idx[2], HERD_OK, NULL);
    UNIT_EQ_INT(herd__handles_wait(&t, h[2], 0), HERD_OK);
    UNIT_EQ_INT(herd__handles_alloc(&t, &extra, &extra_index), HERD_OK);
    UNIT_EQ_INT(extra_index, idx[2]);
    UNIT_EQ_INT(extra, H(2, idx[2]));
    UNIT_EQ_INT(herd__handles_alloc(&t, &h[2], &idx[2]), HERD_ERR_NO_MEMORY);

    /* A cancel makes room as well. */
    herd__handles_cancel(&t, idx[0]);
    herd_handle_t again;
    uint32_t again_index;
    UNIT_EQ_INT(herd__handles_alloc(&t, &again, &again_index), HERD_OK);
    UNIT_EQ_INT(again_index, idx[0]);
    UNIT_EQ_INT(herd__handles_in_use(&t), CAP);
    herd__handles_destroy(&t);
}

static void test_wait_timeout_keeps_the_handle(void)
{
    herd_handle_table_t t;
    table_init(&t, 4);
    uint32_t index;
    herd_handle_t h = alloc_one(&t, &index);
    char want[160];

    int64_t start = herd__clock_ns();
    UNIT_EQ_INT(herd__handles_wait(&t, h, 0), HERD_ERR_TIMEOUT);
    snprintf(want, sizeof want, "handle %lld did not complete within 0 ms; it stays valid",
             (long long)h);
    UNIT_EQ_STR(herd_last_error(), want);
    UNIT_EQ_INT(herd__clock_ns() - start < INT64_C(1000000000), 1);
    UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_INPROGRESS);

    start = herd__clock_ns();
    UNIT_EQ_INT(herd__handles_wait(&t, h, 50), HERD_ERR_TIMEOUT);
    int64_t elapsed = herd__clock_ns() - start;
    if (elapsed < INT64_C(50000000) || elapsed > INT64_C(5000000000))
        UNIT_FAIL("wait(50 ms) returned after %" PRId64 " ns", elapsed);
    snprintf(want, sizeof want, "handle %lld did not complete within 50 ms; it stays valid",
             (long long)h);
    UNIT_EQ_STR(herd_last_error(), want);
    UNIT_EQ_INT(atomic_load(&t.wake_needed), 0);
    UNIT_EQ_INT(herd__handles_in_use(&t), 1);
    UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_INPROGRESS);

    herd__handles_complete(&t, index, HERD_OK, NULL);
    UNIT_EQ_INT(herd__handles_wait(&t, h, 0), HERD_OK);
    UNIT_EQ_INT(herd__handles_in_use(&t), 0);
    herd__handles_destroy(&t);
}

static void test_error_message_travels(void)
{
    herd_handle_table_t t;
    table_init(&t, 1);
    uint32_t index;

    herd_handle_t h = alloc_one(&t, &index);
    char text[] = "msg";
    herd__handles_complete(&t, index, HERD_ERR_MISMATCH, text);
    text[0] = 'X'; /* the table keeps its own copy */
    herd__status_clear();
    UNIT_EQ_INT(herd__handles_wait(&t, h, -1), HERD_ERR_MISMATCH);
    UNIT_EQ_STR(herd_last_error(), "msg");
    UNIT_EQ_STR(herd__status_last(), "msg");

    /* The same slot again, failing without a message: the old text is gone, the sentence of
     * the status stands in. */
    h = alloc_one(&t, &index);
    herd__handles_complete(&t, index, HERD_ERR_SHUTDOWN, NULL);
    UNIT_EQ_INT(herd__handles_poll(&t, h), HERD_ERR_SHUTDOWN);
    UNIT_EQ_STR(herd_last_error(), herd_strerror(HERD_ERR_SHUTDOWN));
    herd__status_clear();
    UNIT_EQ_INT(herd__handles_wait(&t, h, -1), HERD_ERR_SHUTDOWN);
    UNIT_EQ_STR(herd_last_error(), herd_strerror(HERD_ERR_SHUTDOWN));

    /* An empty message counts as none. */
    h = alloc_one(&t, &index);
    herd__handles_complete(&t, index, HERD_ERR_BACKEND, "");
    UNIT_EQ_INT(herd__handles_wait(&t, h, -1), HERD_ERR_BACKEND);
    UNIT_EQ_STR(herd_last_error(), herd_strerror(HERD_ERR_BACKEND));

    /* A success after a failure in the same slot clears the last error. */
    h = alloc_one(&t, &index);
    herd__handles_complete(&t, index, HERD_OK, NULL);
    UNIT_EQ_INT(herd__handles_wait(&t, h, -1), HERD_OK);
    UNIT_EQ_STR(herd_last_error(), "");
    herd__handles_destroy(&t);
}

/* ---- threads ------------------------------------------------------------------------------- */

typedef struct delayed_completion {
    herd_handle_table_t *t;
    uint32_t index;
    int64_t delay_ms;
    int status;
    const char *message;
} delayed_completion_t;

static void *complete_later(void *arg)
{
    delayed_completion_t *d = arg;
    unit_sleep_ms(d->delay_ms);
    herd__handles_complete(d->t, d->index, d->status, d->message);
    herd__handles_notify(d->t);
    return NULL;
}

static void test_wait_wakes_on_completion_from_another_thread(void)
{
    herd_handle_table_t t;
    table_init(&t, 4);
    uint32_t index;
    herd_handle_t h = alloc_one(&t, &index);
    delayed_completion_t d = {&t, index, 30, HERD_ERR_MISMATCH, "from the coordinator"};
    pthread_t th;
    UNIT_EQ_INT_FATAL(pthread_create(&th, NULL, complete_later, &d), 0);
    int64_t start = unit_now_ms();
    int rc = herd__handles_wait(&t, h, 5000);
    int64_t elapsed = unit_now_ms() - start;
    pthread_join(th, NULL);
    UNIT_EQ_INT(rc, HERD_ERR_MISMATCH);
    UNIT_EQ_STR(herd_last_error(), "from the coordinator");
    if (elapsed > 2000)
        UNIT_FAIL("the waiter woke %" PRId64 " ms after a 30 ms completion", elapsed);
    UNIT_EQ_INT(herd__handles_in_use(&t), 0);

    /* A long (but representable) timeout is not a timeout. Skipped when the wake above failed:
     * it would then sleep for days. */
    if (rc != HERD_ERR_MISMATCH || elapsed > 2000) {
        herd__handles_destroy(&t);
        return;
    }
    h = alloc_one(&t, &index);
    d = (delayed_completion_t){&t, index, 20, HERD_OK, NULL};
    UNIT_EQ_INT_FATAL(pthread_create(&th, NULL, complete_later, &d), 0);
    rc = herd__handles_wait(&t, h, INT64_C(1000000000)); /* about 11.6 days */
    pthread_join(th, NULL);
    UNIT_EQ_INT(rc, HERD_OK);
    herd__handles_destroy(&t);
}

/* herd_wait_handle documents -1 as "forever" and accepts every timeout >= 0. A caller passing
 * INT64_MAX (a common "forever" spelling) must get a wait, not an instant timeout. Run in a
 * child process: if the arithmetic overflows, a UBSan build aborts there, not in this suite. */
static void test_wait_with_int64_max_timeout_waits(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    UNIT_EQ_INT_FATAL(pid >= 0, 1);
    if (pid == 0) {
        alarm(10);
        herd_handle_table_t t;
        memset(&t, 0, sizeof t);
        if (herd__handles_init(&t, 2) != HERD_OK)
            _exit(2);
        herd_handle_t h;
        uint32_t index;
        if (herd__handles_alloc(&t, &h, &index) != HERD_OK)
            _exit(3);
        delayed_completion_t d = {&t, index, 50, HERD_OK, NULL};
        pthread_t th;
        if (pthread_create(&th, NULL, complete_later, &d) != 0)
            _exit(4);
        int rc = herd__handles_wait(&t, h, INT64_MAX);
        pthread_join(th, NULL);
        _exit(rc == HERD_OK ? 0 : rc < 0 ? 100 - rc : 99); /* 108: HERD_ERR_TIMEOUT */
    }
    int st = 0;
    UNIT_EQ_INT_FATAL(waitpid(pid, &st, 0), pid);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (WIFSIGNALED(st))
        UNIT_FAIL("herd__handles_wait(h, INT64_MAX): the child died of signal %d", WTERMSIG(st));
    else if (code > 100)
        UNIT_FAIL("herd__handles_wait(h, INT64_MAX) on an operation completed 50 ms later "
                  "returned %d (%s), expected HERD_OK",
                  100 - code, herd_status_name(100 - code));
    else if (code != 0)
        UNIT_FAIL("herd__handles_wait(h, INT64_MAX): the child exited with %d (a sanitizer "
                  "report above, or a failed setup step)",
                  code);
    UNIT_EQ_INT(code, 0);
}

/* Many submitters, one completer: each submitter allocates, hands its slot to the completer
 * and waits; the completer completes in batches and notifies once per batch, like the
 * coordinator. A lost wake-up shows as a timeout. */
enum { MT_WORKERS = 4, MT_OPS = 300, MT_CAPACITY = 16, MT_WAIT_MS = 5000 };

typedef struct mt_ctx {
    herd_handle_table_t table;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint32_t fifo[MT_WORKERS * MT_OPS];
    int fifo_head, fifo_tail; /* guarded by lock */
    int abort;                /* guarded by lock: a worker failed; stop early */
    int errors[MT_WORKERS];
    char first_error[MT_WORKERS][200];
} mt_ctx_t;

typedef struct mt_worker {
    mt_ctx_t *c;
    int id;
} mt_worker_t;

static int mt_expected_status(int64_t tag)
{
    return tag % 3 == 0 ? HERD_ERR_MISMATCH : tag % 7 == 0 ? HERD_ERR_SHUTDOWN : HERD_OK;
}

/* Records a worker's failure and stops the run: a lost wake-up would otherwise cost every
 * remaining operation its full timeout. */
static void mt_note(mt_ctx_t *c, int id, const char *what, int64_t tag, int got)
{
    if (c->errors[id]++ == 0)
        snprintf(c->first_error[id], sizeof c->first_error[id], "worker %d op %lld: %s (%d)", id,
                 (long long)tag, what, got);
    pthread_mutex_lock(&c->lock);
    c->abort = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static int mt_aborted(mt_ctx_t *c)
{
    pthread_mutex_lock(&c->lock);
    int a = c->abort;
    pthread_mutex_unlock(&c->lock);
    return a;
}

static void *mt_worker_main(void *arg)
{
    mt_worker_t *w = arg;
    mt_ctx_t *c = w->c;
    for (int i = 0; i < MT_OPS && !mt_aborted(c); i++) {
        int64_t tag = (int64_t)w->id * 100000 + i;
        herd_handle_t h;
        uint32_t index;
        int rc;
        while ((rc = herd__handles_alloc(&c->table, &h, &index)) == HERD_ERR_NO_MEMORY)
            unit_sleep_ms(1); /* 4 workers never hold more than 4 of 16 slots; defensive */
        if (rc != HERD_OK) {
            mt_note(c, w->id, "alloc failed", tag, rc);
            return NULL;
        }
        herd__handles_request(&c->table, index)->count = tag;
        pthread_mutex_lock(&c->lock);
        c->fifo[c->fifo_tail++] = index;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
        /* Odd ops poll a little first, so both "already done" and "must sleep" paths run. */
        if (i % 2)
            (void)herd__handles_poll(&c->table, h);
        int64_t start = unit_now_ms();
        rc = herd__handles_wait(&c->table, h, MT_WAIT_MS);
        if (unit_now_ms() - start > MT_WAIT_MS / 2) {
            /* A completion the waiter only found at its own deadline: a lost wake-up. */
            mt_note(c, w->id, "woken by the timeout, not the completion", tag, rc);
            continue;
        }
        int want = mt_expected_status(tag);
        if (rc != want) {
            mt_note(c, w->id, "wrong status", tag, rc);
            continue;
        }
        if (want == HERD_ERR_MISMATCH) {
            char msg[64];
            snprintf(msg, sizeof msg, "op %lld failed", (long long)tag);
            if (strcmp(herd_last_error(), msg) != 0)
                mt_note(c, w->id, "wrong message", tag, rc);
        } else if (want == HERD_ERR_SHUTDOWN) {
            if (strcmp(herd_last_error(), herd_strerror(HERD_ERR_SHUTDOWN)) != 0)
                mt_note(c, w->id, "wrong message", tag, rc);
        }
    }
    return NULL;
}

static void *mt_completer_main(void *arg)
{
    mt_ctx_t *c = arg;
    int done = 0;
    unsigned batch_seed = 1;
    while (done < MT_WORKERS * MT_OPS) {
        uint32_t batch[3];
        int n = 0;
        int want = 1 + (int)(batch_seed++ % 3);
        pthread_mutex_lock(&c->lock);
        while (c->fifo_head == c->fifo_tail && !c->abort)
            pthread_cond_wait(&c->cond, &c->lock);
        int stop = c->abort;
        while (n < want && c->fifo_head < c->fifo_tail)
            batch[n++] = c->fifo[c->fifo_head++];
        pthread_mutex_unlock(&c->lock);
        if (stop && n == 0)
            break;
        for (int k = 0; k < n; k++) {
            int64_t tag = herd__handles_request(&c->table, batch[k])->count;
            int status = mt_expected_status(tag);
            char msg[64];
            snprintf(msg, sizeof msg, "op %lld failed", (long long)tag);
            herd__handles_complete(&c->table, batch[k], status,
                                   status == HERD_ERR_MISMATCH ? msg : NULL);
        }
        if (batch_seed % 5 == 0)
            sched_yield(); /* let waiters reach the condvar before the wake */
        herd__handles_notify(&c->table);
        done += n;
    }
    return NULL;
}

static void test_many_threads_no_lost_wakeups(void)
{
    static mt_ctx_t c;
    memset(&c, 0, sizeof c);
    table_init(&c.table, MT_CAPACITY);
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    pthread_t completer, workers[MT_WORKERS];
    mt_worker_t w[MT_WORKERS];
    int64_t start = unit_now_ms();
    UNIT_EQ_INT_FATAL(pthread_create(&completer, NULL, mt_completer_main, &c), 0);
    for (int i = 0; i < MT_WORKERS; i++) {
        w[i] = (mt_worker_t){&c, i};
        UNIT_EQ_INT_FATAL(pthread_create(&workers[i], NULL, mt_worker_main, &w[i]), 0);
    }
    for (int i = 0; i < MT_WORKERS; i++)
        pthread_join(workers[i], NULL);
    pthread_join(completer, NULL);
    int64_t elapsed = unit_now_ms() - start;
    for (int i = 0; i < MT_WORKERS; i++) {
        if (c.errors[i])
            UNIT_FAIL("%d errors, first: %s", c.errors[i], c.first_error[i]);
        UNIT_EQ_INT(c.errors[i], 0);
    }
    UNIT_EQ_INT(c.abort, 0);
    UNIT_EQ_INT(c.fifo_tail, MT_WORKERS * MT_OPS);
    UNIT_EQ_INT(herd__handles_in_use(&c.table), 0);
    UNIT_EQ_INT(atomic_load(&c.table.wake_needed), 0);
    if (elapsed > 20000)
        UNIT_FAIL("%d operations took %" PRId64 " ms", MT_WORKERS * MT_OPS, elapsed);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
    herd__handles_destroy(&c.table);
}

typedef struct racer {
    herd_handle_table_t *t;
    herd_handle_t h;
    int rc;
    char message[64];
} racer_t;

static void *racer_main(void *arg)
{
    racer_t *r = arg;
    r->rc = herd__handles_wait(r->t, r->h, 3000);
    snprintf(r->message, sizeof r->message, "%s", herd_last_error());
    return NULL;
}

/* Returns 1 if the round went as it must. */
static int two_waiters(int complete_first, int delay_ms)
{
    herd_handle_table_t t;
    table_init(&t, 2);
    uint32_t index;
    herd_handle_t h = alloc_one(&t, &index);
    if (complete_first)
        herd__handles_complete(&t, index, HERD_ERR_MISMATCH, "once");
    racer_t r[2] = {{&t, h, 99, ""}, {&t, h, 99, ""}};
    pthread_t th[2];
    int64_t start = unit_now_ms();
    for (int i = 0; i < 2; i++)
        UNIT_EQ_INT_FATAL(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    if (!complete_first) {
        unit_sleep_ms(delay_ms);
        herd__handles_complete(&t, index, HERD_ERR_MISMATCH, "once");
        herd__handles_notify(&t);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* The winner is woken by the completion, not by its own 3 s timeout. */
    int64_t elapsed = unit_now_ms() - start;
    if (elapsed > 2000)
        UNIT_FAIL("two waiters took %lld ms to learn of a completion", (long long)elapsed);
    int winners = 0, losers = 0, others = 0;
    for (int i = 0; i < 2; i++) {
        if (r[i].rc == HERD_ERR_MISMATCH) {
            winners++;
            UNIT_EQ_STR(r[i].message, "once");
        } else if (r[i].rc == HERD_ERR_NOT_FOUND) {
            losers++;
            UNIT_CONTAINS(r[i].message, "unknown, stale or already waited on");
        } else {
            others++;
            UNIT_FAIL("a waiter got %d (%s)", r[i].rc, herd_status_name(r[i].rc));
        }
    }
    UNIT_EQ_INT(winners, 1);
    UNIT_EQ_INT(losers, 1);
    unsigned in_use = herd__handles_in_use(&t);
    UNIT_EQ_INT(in_use, 0);
    UNIT_EQ_INT(atomic_load(&t.wake_needed), 0);
    herd__handles_destroy(&t);
    return winners == 1 && losers == 1 && others == 0 && in_use == 0 && elapsed <= 2000;
}

static void test_two_waiters_on_one_handle(void)
{
    /* Stops at the first bad round, so a lost wake-up costs one timeout, not forty. */
    int ok = 1;
    for (int i = 0; i < 10 && ok; i++)
        ok = two_waiters(0, 10); /* both asleep when it completes */
    for (int i = 0; i < 20 && ok; i++)
        ok = two_waiters(0, 0); /* completion races the waiters' arrival */
    for (int i = 0; i < 10 && ok; i++)
        ok = two_waiters(1, 0); /* already complete: they race to take it */
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"init_bounds", test_init_bounds},
        {"round_trip", test_round_trip},
        {"handles_are_never_zero_and_distinct", test_handles_are_never_zero_and_distinct},
        {"poll_never_releases", test_poll_never_releases},
        {"stale_handle_after_slot_reuse", test_stale_handle_after_slot_reuse},
        {"generation_wraps_to_a_positive_handle", test_generation_wraps_to_a_positive_handle},
        {"forged_handles", test_forged_handles},
        {"table_full", test_table_full},
        {"wait_timeout_keeps_the_handle", test_wait_timeout_keeps_the_handle},
        {"error_message_travels", test_error_message_travels},
        {"wait_wakes_on_completion_from_another_thread",
         test_wait_wakes_on_completion_from_another_thread},
        {"wait_with_int64_max_timeout_waits", test_wait_with_int64_max_timeout_waits},
        {"many_threads_no_lost_wakeups", test_many_threads_no_lost_wakeups},
        {"two_waiters_on_one_handle", test_two_waiters_on_one_handle},
        CU_TEST_INFO_NULL,
    };
    return unit_run("handle_table", tests);
}
