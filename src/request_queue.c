/* request_queue.c - a mutex-protected intrusive FIFO. Producers signal the condition variable
 * only while the coordinator thread sleeps and no application thread is driving, so a busy
 * coordinator costs submitters no syscall.
 *
 * The driving flag and the pending count form a Dekker pair: a submitter increments `pending`
 * and then reads `driving`; a driver that stops clears `driving` and then reads `pending`
 * (coordinator.c). Both sequentially consistent, so at least one of them sees the other and the
 * request is never left without someone to run it. */
#include "request_queue.h"

#include <stdlib.h>

#include "herd.h"
#include "util/thread.h"

int herd__queue_init(herd_request_queue_t *q, uint32_t capacity)
{
    q->next = malloc(sizeof *q->next * capacity);
    if (q->next == NULL)
        return HERD_ERR_NO_MEMORY;
    herd__mutex_init(&q->lock);
    herd__cond_init_monotonic(&q->cond);
    q->head = q->tail = HERD_NO_INDEX;
    q->count = 0;
    q->sleeping = 0;
    q->nudged = 0;
    atomic_init(&q->pending, 0);
    atomic_init(&q->driving, 0);
    atomic_init(&q->unsignaled, 0);
    atomic_init(&q->joined, 0);
    q->capacity = capacity;
    return HERD_OK;
}

void herd__queue_destroy(herd_request_queue_t *q)
{
    if (q->next == NULL)
        return;
    herd__cond_destroy(&q->cond);
    herd__mutex_destroy(&q->lock);
    free(q->next);
    q->next = NULL;
}

/* Appends `index` at the tail. Caller holds q->lock. */
static void append_locked(herd_request_queue_t *q, uint32_t index)
{
    q->next[index] = HERD_NO_INDEX;
    if (q->tail == HERD_NO_INDEX)
        q->head = index;
    else
        q->next[q->tail] = index;
    q->tail = index;
    q->count++;
}

void herd__queue_push(herd_request_queue_t *q, uint32_t index, int defer)
{
    herd__mutex_lock(&q->lock);
    append_locked(q, index);
    atomic_fetch_add(&q->pending, 1);
    if (q->sleeping && !atomic_load(&q->driving) &&
        (atomic_exchange(&q->unsignaled, 1) || !defer))
        herd__cond_signal(&q->cond);
    herd__mutex_unlock(&q->lock);
}

void herd__queue_push_many(herd_request_queue_t *q, const uint32_t *indices, uint32_t n)
{
    if (n == 0)
        return;
    herd__mutex_lock(&q->lock);
    for (uint32_t i = 0; i < n; i++)
        append_locked(q, indices[i]);
    atomic_fetch_add(&q->pending, n);
    if (q->sleeping && !atomic_load(&q->driving))
        herd__cond_signal(&q->cond);
    herd__mutex_unlock(&q->lock);
}

void herd__queue_flush(herd_request_queue_t *q)
{
    if (!atomic_load(&q->unsignaled) || !atomic_exchange(&q->unsignaled, 0))
        return;
    herd__mutex_lock(&q->lock);
    if (q->sleeping)
        herd__cond_signal(&q->cond);
    herd__mutex_unlock(&q->lock);
}

void herd__queue_nudge(herd_request_queue_t *q)
{
    herd__mutex_lock(&q->lock);
    q->nudged = 1;
    herd__cond_signal(&q->cond);
    herd__mutex_unlock(&q->lock);
}

uint32_t herd__queue_drain(herd_request_queue_t *q)
{
    if (atomic_load_explicit(&q->pending, memory_order_acquire) == 0)
        return HERD_NO_INDEX;
    herd__mutex_lock(&q->lock);
    uint32_t head = q->head;
    atomic_store(&q->unsignaled, 0);
    atomic_fetch_sub(&q->pending, q->count);
    q->count = 0;
    q->head = q->tail = HERD_NO_INDEX;
    herd__mutex_unlock(&q->lock);
    return head;
}

uint32_t herd__queue_next(const herd_request_queue_t *q, uint32_t index)
{
    return q->next[index];
}

int herd__queue_ready(herd_request_queue_t *q)
{
    return atomic_load(&q->pending) != 0;
}

int herd__queue_sleep(herd_request_queue_t *q, int64_t deadline_ns, int requests_too)
{
    herd__mutex_lock(&q->lock);
    q->sleeping = 1;
    int woken = 0;
    while (!(woken = q->nudged || (requests_too && q->head != HERD_NO_INDEX))) {
        if (herd__cond_wait_until(&q->cond, &q->lock, deadline_ns))
            break;
    }
    q->nudged = 0;
    q->sleeping = 0;
    herd__mutex_unlock(&q->lock);
    return woken;
}
