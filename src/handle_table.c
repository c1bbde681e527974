/* handle_table.c - see handle_table.h. The wait protocol: a waiter registers in its slot's
 * `waiting` before it reads the status (both under the lock), and the completer publishes the
 * status before it reads `waiting`; so either the waiter sees the status, or the completer sees
 * the waiter and the next notify broadcasts under the lock. No wake is lost, a completion nobody
 * waits for costs no syscall, and a waiter is not woken by other slots' completions unless they
 * share a batch with one that has a waiter. */
#include "handle_table.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "util/clock.h"
#include "util/thread.h"

#define INDEX_MASK ((UINT64_C(1) << HERD_HANDLE_INDEX_BITS) - 1)

int herd__handles_init(herd_handle_table_t *t, uint32_t capacity)
{
    if (capacity == 0 || capacity > HERD_MAX_HANDLE_CAPACITY)
        return HERD_ERR_INVALID_ARG;
    t->slots = calloc(capacity, sizeof *t->slots);
    if (t->slots == NULL)
        return HERD_ERR_NO_MEMORY;
    for (uint32_t i = 0; i < capacity; i++) {
        atomic_init(&t->slots[i].generation, 1);
        atomic_init(&t->slots[i].in_use, 0);
        atomic_init(&t->slots[i].status, HERD_OK);
        atomic_init(&t->slots[i].waiting, 0);
        t->slots[i].next_free = i + 1 < capacity ? i + 1 : HERD_NO_INDEX;
    }
    herd__mutex_init(&t->lock);
    herd__cond_init_monotonic(&t->done);
    atomic_init(&t->wake_needed, 0);
    atomic_init(&t->running, 0);
    t->free_head = 0;
    t->capacity = capacity;
    return HERD_OK;
}

void herd__handles_destroy(herd_handle_table_t *t)
{
    if (t->slots == NULL)
        return;
    for (uint32_t i = 0; i < t->capacity; i++)
        free(t->slots[i].message);
    herd__cond_destroy(&t->done);
    herd__mutex_destroy(&t->lock);
    free(t->slots);
    t->slots = NULL;
}

static herd_handle_t make_handle(uint64_t generation, uint32_t index)
{
    return (herd_handle_t)((generation << HERD_HANDLE_INDEX_BITS) | index);
}

int herd__handles_alloc(herd_handle_table_t *t, herd_handle_t *handle_out, uint32_t *index_out)
{
    herd__mutex_lock(&t->lock);
    uint32_t index = t->free_head;
    if (index == HERD_NO_INDEX) {
        herd__mutex_unlock(&t->lock);
        return herd__status_set(HERD_ERR_NO_MEMORY,
                                "all %u operation slots are in flight: wait on some handles "
                                "first, or raise HERD_MAX_HANDLES",
                                t->capacity);
    }
    herd_slot_t *s = &t->slots[index];
    t->free_head = s->next_free;
    atomic_store(&s->status, HERD_INPROGRESS);
    atomic_store(&s->in_use, 1);
    atomic_fetch_add(&t->running, 1);
    herd__mutex_unlock(&t->lock);
    *handle_out = make_handle(atomic_load(&s->generation), index);
    *index_out = index;
    return HERD_OK;
}

/* Caller holds t->lock. */
static void release_locked(herd_handle_table_t *t, uint32_t index)
{
    herd_slot_t *s = &t->slots[index];
    free(s->message);
    s->message = NULL;
    atomic_store(&s->in_use, 0);
    /* Wrap long before the generation would spill out of the int64 handle's high bits. */
    uint64_t next = atomic_load(&s->generation) + 1;
    if (next >> (63 - HERD_HANDLE_INDEX_BITS))
        next = 1;
    atomic_store(&s->generation, next);
    s->next_free = t->free_head;
    t->free_head = index;
}

void herd__handles_cancel(herd_handle_table_t *t, uint32_t index)
{
    atomic_fetch_sub(&t->running, 1);
    herd__mutex_lock(&t->lock);
    release_locked(t, index);
    herd__mutex_unlock(&t->lock);
}

void herd__handles_complete(herd_handle_table_t *t, uint32_t index, int status,
                            const char *message)
{
    herd_slot_t *s = &t->slots[index];
    if (message != NULL && message[0] != '\0')
        s->message = strdup(message); /* error path only; NULL on failure is tolerated */
    atomic_fetch_sub(&t->running, 1);
    atomic_store(&s->status, status);
    if (atomic_load(&s->waiting) > 0)
        atomic_store(&t->wake_needed, 1);
}

void herd__handles_notify(herd_handle_table_t *t)
{
    if (!atomic_load(&t->wake_needed) || !atomic_exchange(&t->wake_needed, 0))
        return;
    herd__mutex_lock(&t->lock);
    herd__cond_broadcast(&t->done);
    herd__mutex_unlock(&t->lock);
}

/* The slot a handle names if it is live, else NULL. */
static herd_slot_t *lookup(herd_handle_table_t *t, herd_handle_t handle, uint32_t *index_out)
{
    if (handle <= 0 || t->slots == NULL)
        return NULL;
    uint64_t index = (uint64_t)handle & INDEX_MASK;
    uint64_t generation = (uint64_t)handle >> HERD_HANDLE_INDEX_BITS;
    if (index >= t->capacity)
        return NULL;
    herd_slot_t *s = &t->slots[index];
    if (atomic_load(&s->generation) != generation || !atomic_load(&s->in_use))
        return NULL;
    *index_out = (uint32_t)index;
    return s;
}

static int not_found(herd_handle_t handle)
{
    return herd__status_set(HERD_ERR_NOT_FOUND,
                            "handle %lld is unknown, stale or already waited on",
                            (long long)handle);
}

int herd__handles_poll(herd_handle_table_t *t, herd_handle_t handle)
{
    uint32_t index;
    herd_slot_t *s = lookup(t, handle, &index);
    if (s == NULL)
        return not_found(handle);
    int status = atomic_load(&s->status);
    /* Re-check: if the slot was released and reused meanwhile, the status is someone else's. */
    if (lookup(t, handle, &index) != s)
        return not_found(handle);
    if (status < 0) {
        /* Error path: read the message under the lock, so a concurrent wait cannot free it. */
        herd__mutex_lock(&t->lock);
        if (lookup(t, handle, &index) != s) {
            herd__mutex_unlock(&t->lock);
            return not_found(handle);
        }
        herd__status_set_msg(status, s->message ? s->message : herd_strerror(status));
        herd__mutex_unlock(&t->lock);
    }
    return status;
}

int herd__handles_wait(herd_handle_table_t *t, herd_handle_t handle, int64_t timeout_ms)
{
    int64_t now = timeout_ms < 0 ? 0 : herd__clock_ns(); /* forever needs no clock */
    /* A timeout too long to represent is forever (no overflow for any int64 timeout). */
    int64_t deadline = timeout_ms < 0 || timeout_ms > (INT64_MAX - now) / 1000000
                           ? INT64_MAX
                           : now + timeout_ms * 1000000;
    uint32_t index;
    herd__mutex_lock(&t->lock);
    herd_slot_t *s = lookup(t, handle, &index);
    if (s == NULL) {
        herd__mutex_unlock(&t->lock);
        return not_found(handle);
    }
    atomic_fetch_add(&s->waiting, 1);
    int timed_out = 0;
    while (atomic_load(&s->status) == HERD_INPROGRESS && !timed_out) {
        if (deadline == INT64_MAX)
            herd__cond_wait(&t->done, &t->lock);
        else
            timed_out = herd__cond_wait_until(&t->done, &t->lock, deadline);
        /* Another thread may have waited on the same handle and released it meanwhile. */
        if (lookup(t, handle, &index) != s) {
            atomic_fetch_sub(&s->waiting, 1);
            herd__mutex_unlock(&t->lock);
            return not_found(handle);
        }
    }
    atomic_fetch_sub(&s->waiting, 1);
    int status = atomic_load(&s->status);
    if (status == HERD_INPROGRESS) {
        herd__mutex_unlock(&t->lock);
        return herd__status_set(HERD_ERR_TIMEOUT,
                                "handle %lld did not complete within %lld ms; it stays valid",
                                (long long)handle, (long long)timeout_ms);
    }
    if (status < 0)
        herd__status_set_msg(status, s->message ? s->message : herd_strerror(status));
    else
        herd__status_clear();
    release_locked(t, index);
    herd__mutex_unlock(&t->lock);
    return status;
}

uint32_t herd__handles_in_use(herd_handle_table_t *t)
{
    uint32_t n = 0;
    herd__mutex_lock(&t->lock);
    for (uint32_t i = 0; i < t->capacity; i++)
        n += (uint32_t)atomic_load(&t->slots[i].in_use);
    herd__mutex_unlock(&t->lock);
    return n;
}
