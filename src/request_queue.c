/* request_queue.c - a mutex-protected intrusive FIFO. Producers signal the condition variable
 * only while the coordinator sleeps, so a busy coordinator costs submitters no syscall. */
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
    q->kicked = 0;
    atomic_init(&q->pending, 0);
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

void herd__queue_push(herd_request_queue_t *q, uint32_t index)
{
    herd__mutex_lock(&q->lock);
    q->next[index] = HERD_NO_INDEX;
    if (q->tail == HERD_NO_INDEX)
        q->head = index;
    else
        q->next[q->tail] = index;
    q->tail = index;
    q->count++;
    atomic_fetch_add(&q->pending, 1);
    if (q->sleeping)
        herd__cond_signal(&q->cond);
    herd__mutex_unlock(&q->lock);
}

void herd__queue_kick(herd_request_queue_t *q)
{
    herd__mutex_lock(&q->lock);
    q->kicked = 1;
    atomic_fetch_add(&q->pending, 1);
    herd__cond_signal(&q->cond);
    herd__mutex_unlock(&q->lock);
}

uint32_t herd__queue_drain(herd_request_queue_t *q)
{
    if (atomic_load_explicit(&q->pending, memory_order_acquire) == 0)
        return HERD_NO_INDEX;
    herd__mutex_lock(&q->lock);
    uint32_t head = q->head;
    unsigned taken = q->count;
    q->count = 0;
    q->head = q->tail = HERD_NO_INDEX;
    atomic_fetch_sub(&q->pending, taken);
    herd__mutex_unlock(&q->lock);
    return head;
}

uint32_t herd__queue_next(const herd_request_queue_t *q, uint32_t index)
{
    return q->next[index];
}

int herd__queue_ready(herd_request_queue_t *q)
{
    return atomic_load_explicit(&q->pending, memory_order_acquire) != 0;
}

void herd__queue_sleep(herd_request_queue_t *q, int64_t deadline_ns)
{
    herd__mutex_lock(&q->lock);
    q->sleeping = 1;
    while (q->head == HERD_NO_INDEX && !q->kicked) {
        if (herd__cond_wait_until(&q->cond, &q->lock, deadline_ns))
            break;
    }
    q->sleeping = 0;
    herd__mutex_unlock(&q->lock);
}

int herd__queue_take_kick(herd_request_queue_t *q)
{
    herd__mutex_lock(&q->lock);
    int kicked = q->kicked;
    if (kicked)
        atomic_fetch_sub(&q->pending, 1);
    q->kicked = 0;
    herd__mutex_unlock(&q->lock);
    return kicked;
}
