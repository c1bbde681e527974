/* test_request_queue.c - the submitter-to-coordinator FIFO: order, the ready flag, nudges, waking
 * a sleeping coordinator thread (at once, or deferred until the second push, a flush or its own
 * deadline), the driving flag that silences wakes, and concurrent producers. */
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include "herd.h"
#include "request_queue.h"
#include "unit.h"
#include "util/clock.h"

static const int64_t MS = INT64_C(1000000);

static void queue_init(herd_request_queue_t *q, uint32_t capacity)
{
    memset(q, 0, sizeof *q);
    UNIT_EQ_INT_FATAL(herd__queue_init(q, capacity), HERD_OK);
}

/* Drains the queue into out[] (at most cap entries); returns how many. */
static int drain_all(herd_request_queue_t *q, uint32_t *out, int cap)
{
    int n = 0;
    for (uint32_t i = herd__queue_drain(q); i != HERD_NO_INDEX; i = herd__queue_next(q, i)) {
        if (n == cap) {
            UNIT_FAIL("more than %d entries drained: a cycle?", cap);
            break;
        }
        out[n++] = i;
    }
    return n;
}

static int is_sleeping(herd_request_queue_t *q)
{
    pthread_mutex_lock(&q->lock);
    int s = q->sleeping;
    pthread_mutex_unlock(&q->lock);
    return s;
}

/* Blocks until the coordinator side is inside herd__queue_sleep (at most 5 s). */
static int wait_until_sleeping(herd_request_queue_t *q)
{
    for (int i = 0; i < 5000; i++) {
        if (is_sleeping(q))
            return 1;
        unit_sleep_ms(1);
    }
    return 0;
}

/* Sleeps and measures: returns herd__queue_sleep's result, elapsed time in *ns. */
static int timed_sleep(herd_request_queue_t *q, int64_t timeout_ns, int requests_too, int64_t *ns)
{
    int64_t start = herd__clock_ns();
    int64_t deadline = timeout_ns == INT64_MAX ? INT64_MAX : start + timeout_ns;
    int woken = herd__queue_sleep(q, deadline, requests_too);
    *ns = herd__clock_ns() - start;
    return woken;
}

static void test_empty_queue(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    UNIT_EQ_INT(q.capacity, 4);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    UNIT_EQ_INT(herd__queue_drain(&q), HERD_NO_INDEX);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    herd__queue_flush(&q); /* nothing unsignaled: a no-op */
    UNIT_EQ_INT(atomic_load(&q.unsignaled), 0);
    herd__queue_destroy(&q);
    herd__queue_destroy(&q); /* idempotent */
}

static void test_fifo_order(void)
{
    herd_request_queue_t q;
    queue_init(&q, 8);
    const uint32_t in[] = {3, 1, 7, 0, 5};
    for (int i = 0; i < 5; i++)
        herd__queue_push(&q, in[i], 0);
    UNIT_EQ_INT(herd__queue_ready(&q), 1);
    UNIT_EQ_INT(atomic_load(&q.pending), 5);
    uint32_t first = herd__queue_drain(&q);
    UNIT_EQ_INT(first, 3);
    UNIT_EQ_INT(herd__queue_next(&q, 3), 1);
    UNIT_EQ_INT(herd__queue_next(&q, 1), 7);
    UNIT_EQ_INT(herd__queue_next(&q, 7), 0);
    UNIT_EQ_INT(herd__queue_next(&q, 0), 5);
    UNIT_EQ_INT(herd__queue_next(&q, 5), HERD_NO_INDEX);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    UNIT_EQ_INT(atomic_load(&q.pending), 0);
    UNIT_EQ_INT(herd__queue_drain(&q), HERD_NO_INDEX);

    /* A second batch, reusing indices of the first, forms a fresh list. */
    herd__queue_push(&q, 5, 0);
    herd__queue_push(&q, 3, 0);
    uint32_t out[8];
    int n = drain_all(&q, out, 8);
    UNIT_EQ_INT(n, 2);
    UNIT_EQ_INT(out[0], 5);
    UNIT_EQ_INT(out[1], 3);

    /* One entry: head is also the tail. */
    herd__queue_push(&q, 6, 0);
    n = drain_all(&q, out, 8);
    UNIT_EQ_INT(n, 1);
    UNIT_EQ_INT(out[0], 6);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    herd__queue_destroy(&q);
}

static void test_nudge_is_not_a_request(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    herd__queue_nudge(&q);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    UNIT_EQ_INT(herd__queue_drain(&q), HERD_NO_INDEX);
    herd__queue_push(&q, 2, 0);
    herd__queue_nudge(&q);
    uint32_t out[4];
    UNIT_EQ_INT(drain_all(&q, out, 4), 1);
    UNIT_EQ_INT(out[0], 2);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    herd__queue_destroy(&q);
}

static void test_pending_nudge_ends_the_next_sleep_once(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    int64_t ns;
    herd__queue_nudge(&q); /* nobody sleeps yet: it waits for the next sleep */
    UNIT_EQ_INT(timed_sleep(&q, 10000 * MS, 1, &ns), 1);
    UNIT_EQ_INT(ns < 1000 * MS, 1);
    /* The sleep consumed it: the next one runs to its deadline. */
    UNIT_EQ_INT(timed_sleep(&q, 50 * MS, 1, &ns), 0);
    if (ns < 50 * MS || ns > 5000 * MS)
        UNIT_FAIL("sleep until +50 ms returned after %" PRId64 " ns", ns);
    /* A nudge ends a sleep that ignores requests, too. */
    herd__queue_nudge(&q);
    UNIT_EQ_INT(timed_sleep(&q, 10000 * MS, 0, &ns), 1);
    UNIT_EQ_INT(ns < 1000 * MS, 1);
    UNIT_EQ_INT(q.sleeping, 0);
    herd__queue_destroy(&q);
}

static void test_queued_request_ends_sleep_unless_ignored(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    int64_t ns;
    herd__queue_push(&q, 1, 0);
    UNIT_EQ_INT(timed_sleep(&q, 10000 * MS, 1, &ns), 1);
    UNIT_EQ_INT(ns < 1000 * MS, 1);
    /* requests_too = 0: the queued request does not end the sleep. */
    UNIT_EQ_INT(timed_sleep(&q, 50 * MS, 0, &ns), 0);
    UNIT_EQ_INT(ns >= 50 * MS, 1);
    UNIT_EQ_INT(herd__queue_ready(&q), 1); /* sleeping took nothing */
    UNIT_EQ_INT(herd__queue_drain(&q), 1);
    herd__queue_destroy(&q);
}

static void test_sleep_returns_at_the_deadline(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    int64_t ns;
    UNIT_EQ_INT(timed_sleep(&q, 50 * MS, 1, &ns), 0);
    if (ns < 50 * MS || ns > 5000 * MS)
        UNIT_FAIL("sleep until +50 ms returned after %" PRId64 " ns", ns);
    UNIT_EQ_INT(ns >= 50 * MS, 1);
    UNIT_EQ_INT(q.sleeping, 0);
    /* A deadline already past returns at once. */
    UNIT_EQ_INT(timed_sleep(&q, -1 * MS, 1, &ns), 0);
    UNIT_EQ_INT(ns < 1000 * MS, 1);
    herd__queue_destroy(&q);
}

/* ---- another thread wakes the sleeper ------------------------------------------------------ */

typedef enum { ACT_NUDGE, ACT_PUSH_NOW, ACT_PUSH_TWICE, ACT_PUSH_THEN_FLUSH, ACT_FLUSH_ONLY } act_t;

typedef struct waker {
    herd_request_queue_t *q;
    act_t act;
    int saw_sleeping;
    int still_asleep_after_first_push; /* the first push must not wake the sleeper */
    int unsignaled_after_first_push;
} waker_t;

static void *wake_later(void *arg)
{
    waker_t *w = arg;
    w->saw_sleeping = wait_until_sleeping(w->q);
    switch (w->act) {
    case ACT_NUDGE:
        unit_sleep_ms(20);
        herd__queue_nudge(w->q);
        break;
    case ACT_PUSH_NOW:
        unit_sleep_ms(20);
        herd__queue_push(w->q, 2, 0);
        break;
    case ACT_PUSH_TWICE:
    case ACT_PUSH_THEN_FLUSH:
        herd__queue_push(w->q, 2, 1); /* deferred: leaves the sleeper asleep */
        w->unsignaled_after_first_push = atomic_load(&w->q->unsignaled);
        unit_sleep_ms(60);
        w->still_asleep_after_first_push = is_sleeping(w->q);
        if (w->act == ACT_PUSH_TWICE)
            herd__queue_push(w->q, 3, 1);
        else
            herd__queue_flush(w->q);
        break;
    case ACT_FLUSH_ONLY:
        herd__queue_flush(w->q);
        break;
    }
    return NULL;
}

static void run_waker(herd_request_queue_t *q, waker_t *w, int64_t timeout_ns, int *woken,
                      int64_t *ns)
{
    pthread_t th;
    w->q = q;
    UNIT_EQ_INT_FATAL(pthread_create(&th, NULL, wake_later, w), 0);
    *woken = timed_sleep(q, timeout_ns, 1, ns);
    pthread_join(th, NULL);
    UNIT_EQ_INT(w->saw_sleeping, 1);
}

static void test_nudge_from_another_thread_wakes_the_sleeper(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    waker_t w = {.act = ACT_NUDGE};
    int woken;
    int64_t ns;
    run_waker(&q, &w, INT64_MAX, &woken, &ns); /* only the nudge can end this sleep */
    UNIT_EQ_INT(woken, 1);
    if (ns > 5000 * MS)
        UNIT_FAIL("woke %" PRId64 " ns after a 20 ms nudge", ns);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    herd__queue_destroy(&q);
}

static void test_push_wakes_the_sleeper(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    waker_t w = {.act = ACT_PUSH_NOW};
    int woken;
    int64_t ns;
    run_waker(&q, &w, INT64_MAX, &woken, &ns); /* only the push can end this sleep */
    UNIT_EQ_INT(woken, 1);
    if (ns > 5000 * MS)
        UNIT_FAIL("woke %" PRId64 " ns after a 20 ms push", ns);
    UNIT_EQ_INT(herd__queue_drain(&q), 2);
    herd__queue_destroy(&q);
}

static void test_second_deferred_push_wakes_the_sleeper(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    waker_t w = {.act = ACT_PUSH_TWICE};
    int woken;
    int64_t ns;
    run_waker(&q, &w, 10000 * MS, &woken, &ns);
    /* The first push was left for the sleeper to find later (marked unsignaled)... */
    UNIT_EQ_INT(w.unsignaled_after_first_push, 1);
    UNIT_EQ_INT(w.still_asleep_after_first_push, 1);
    /* ...the second one woke it. */
    UNIT_EQ_INT(woken, 1);
    if (ns > 5000 * MS)
        UNIT_FAIL("woke %" PRId64 " ns after the second push", ns);
    uint32_t out[4];
    UNIT_EQ_INT(drain_all(&q, out, 4), 2);
    UNIT_EQ_INT(out[0], 2);
    UNIT_EQ_INT(out[1], 3);
    UNIT_EQ_INT(atomic_load(&q.unsignaled), 0); /* drain forgets the debt */
    herd__queue_destroy(&q);
}

static void test_flush_wakes_the_sleeper_after_a_deferred_push(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    waker_t w = {.act = ACT_PUSH_THEN_FLUSH};
    int woken;
    int64_t ns;
    run_waker(&q, &w, 10000 * MS, &woken, &ns);
    UNIT_EQ_INT(w.unsignaled_after_first_push, 1);
    UNIT_EQ_INT(w.still_asleep_after_first_push, 1);
    UNIT_EQ_INT(woken, 1);
    if (ns > 5000 * MS)
        UNIT_FAIL("woke %" PRId64 " ns after the flush", ns);
    UNIT_EQ_INT(atomic_load(&q.unsignaled), 0); /* the flush paid the debt */
    UNIT_EQ_INT(herd__queue_drain(&q), 2);
    herd__queue_destroy(&q);
}

static void test_flush_with_nothing_unsignaled_does_not_wake(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    waker_t w = {.act = ACT_FLUSH_ONLY};
    int woken;
    int64_t ns;
    run_waker(&q, &w, 100 * MS, &woken, &ns);
    UNIT_EQ_INT(woken, 0);
    UNIT_EQ_INT(ns >= 100 * MS, 1);
    herd__queue_destroy(&q);
}

/* While an application thread drives progress, pushes leave the coordinator thread asleep and
 * leave no debt for flush: the driver drains the queue itself. */
static void test_driving_silences_wakes(void)
{
    herd_request_queue_t q;
    queue_init(&q, 4);
    atomic_store(&q.driving, 1);
    pthread_mutex_lock(&q.lock);
    q.sleeping = 1; /* as if the coordinator thread slept */
    pthread_mutex_unlock(&q.lock);
    herd__queue_push(&q, 0, 0);
    herd__queue_push(&q, 1, 1);
    herd__queue_push(&q, 2, 0);
    UNIT_EQ_INT(atomic_load(&q.unsignaled), 0);
    atomic_store(&q.driving, 0);
    herd__queue_push(&q, 3, 1); /* not driving any more: this deferred one is owed a wake */
    UNIT_EQ_INT(atomic_load(&q.unsignaled), 1);
    pthread_mutex_lock(&q.lock);
    q.sleeping = 0;
    pthread_mutex_unlock(&q.lock);
    uint32_t out[4];
    UNIT_EQ_INT(drain_all(&q, out, 4), 4);
    UNIT_EQ_INT(out[3], 3);
    UNIT_EQ_INT(atomic_load(&q.unsignaled), 0);
    herd__queue_destroy(&q);
}

/* Several producers at once: every index arrives exactly once, and each producer's own order
 * is kept (the coordinator relies on a rank's submissions staying in order). */
enum { PRODUCERS = 4, PER_PRODUCER = 250 };

typedef struct producer {
    herd_request_queue_t *q;
    int id;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        herd__queue_push(p->q, (uint32_t)p->id * PER_PRODUCER + i, (int)(i % 2));
        if (i % 16 == 0)
            herd__queue_flush(p->q);
    }
    herd__queue_flush(p->q);
    return NULL;
}

static void test_concurrent_producers_keep_their_order(void)
{
    herd_request_queue_t q;
    queue_init(&q, PRODUCERS * PER_PRODUCER);
    pthread_t th[PRODUCERS];
    producer_t p[PRODUCERS];
    static uint32_t got[PRODUCERS * PER_PRODUCER];
    int n = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (producer_t){&q, i};
        UNIT_EQ_INT_FATAL(pthread_create(&th[i], NULL, produce, &p[i]), 0);
    }
    /* Drain while they push, as the coordinator does. */
    int64_t give_up = herd__clock_ns() + 10000 * MS;
    while (n < PRODUCERS * PER_PRODUCER && herd__clock_ns() < give_up) {
        herd__queue_sleep(&q, herd__clock_ns() + MS, 1);
        n += drain_all(&q, got + n, PRODUCERS * PER_PRODUCER - n);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    UNIT_EQ_INT(n, PRODUCERS * PER_PRODUCER);
    int next_expected[PRODUCERS] = {0};
    int out_of_order = 0;
    for (int k = 0; k < n; k++) {
        int id = (int)(got[k] / PER_PRODUCER);
        if (id >= PRODUCERS || (int)(got[k] % PER_PRODUCER) != next_expected[id]) {
            out_of_order++;
            continue;
        }
        next_expected[id]++;
    }
    UNIT_EQ_INT(out_of_order, 0);
    for (int i = 0; i < PRODUCERS; i++)
        UNIT_EQ_INT(next_expected[i], PER_PRODUCER);
    UNIT_EQ_INT(herd__queue_ready(&q), 0);
    herd__queue_destroy(&q);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"empty_queue", test_empty_queue},
        {"fifo_order", test_fifo_order},
        {"nudge_is_not_a_request", test_nudge_is_not_a_request},
        {"pending_nudge_ends_the_next_sleep_once", test_pending_nudge_ends_the_next_sleep_once},
        {"queued_request_ends_sleep_unless_ignored", test_queued_request_ends_sleep_unless_ignored},
        {"sleep_returns_at_the_deadline", test_sleep_returns_at_the_deadline},
        {"nudge_from_another_thread_wakes_the_sleeper",
         test_nudge_from_another_thread_wakes_the_sleeper},
        {"push_wakes_the_sleeper", test_push_wakes_the_sleeper},
        {"second_deferred_push_wakes_the_sleeper", test_second_deferred_push_wakes_the_sleeper},
        {"flush_wakes_the_sleeper_after_a_deferred_push",
         test_flush_wakes_the_sleeper_after_a_deferred_push},
        {"flush_with_nothing_unsignaled_does_not_wake",
         test_flush_with_nothing_unsignaled_does_not_wake},
        {"driving_silences_wakes", test_driving_silences_wakes},
        {"concurrent_producers_keep_their_order", test_concurrent_producers_keep_their_order},
        CU_TEST_INFO_NULL,
    };
    return unit_run("request_queue", tests);
}
