/* handle_table.h - a fixed slab of operation slots addressed by handles that carry a generation.
 *
 * A handle is (generation << 24) | index, generation >= 1, so 0 is never a handle, and a stale
 * or twice-waited handle names a generation the slot has left behind: HERD_ERR_NOT_FOUND, never a
 * use-after-free. The slot holds the request itself, so a submission never allocates.
 *
 * Lock order: table->lock is a leaf; nothing else is locked while it is held.
 */
#ifndef HERD_HANDLE_TABLE_H
#define HERD_HANDLE_TABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "herd.h"
#include "request_queue.h"

enum { HERD_HANDLE_INDEX_BITS = 24, HERD_MAX_HANDLE_CAPACITY = 1 << 22 };

typedef struct herd_slot {
    atomic_uint_fast64_t generation; /* advanced on release; readable without the lock */
    atomic_int in_use;               /* 1 from alloc to release */
    atomic_int status;               /* HERD_INPROGRESS until the coordinator completes it */
    atomic_int waiting;              /* threads waiting on this slot in herd__handles_wait */
    char *message;                   /* error text, set before status; freed at release */
    uint32_t next_free;              /* guarded by table lock */
    int coordinator_owned;           /* under progress lock: taken from the queue, unfinished */
    herd_request_t request;          /* written by the submitter before queueing */
} herd_slot_t;

typedef struct herd_handle_table {
    pthread_mutex_t lock;
    pthread_cond_t done; /* broadcast when a slot completes and someone waits */
    atomic_int wake_needed; /* a completed slot has a waiter: the next notify broadcasts */
    atomic_long running;    /* operations allocated and not yet completed (herd_join's check) */
    uint32_t free_head;  /* guarded by lock */
    uint32_t capacity;
    herd_slot_t *slots;
} herd_handle_table_t;

int herd__handles_init(herd_handle_table_t *t, uint32_t capacity);
void herd__handles_destroy(herd_handle_table_t *t);

/* Takes a free slot: its request is the caller's to fill before queueing. HERD_ERR_NO_MEMORY
 * when every slot is in flight. */
int herd__handles_alloc(herd_handle_table_t *t, herd_handle_t *handle_out, uint32_t *index_out);

/* Returns a slot that was allocated but never queued (a submission that failed late). */
void herd__handles_cancel(herd_handle_table_t *t, uint32_t index);

static inline herd_request_t *herd__handles_request(herd_handle_table_t *t, uint32_t index)
{
    return &t->slots[index].request;
}

/* Completes the operation in slot `index` with `status` and an optional message (copied).
 * Waiters are not woken until herd__handles_notify, so a batch costs one wake. Coordinator. */
void herd__handles_complete(herd_handle_table_t *t, uint32_t index, int status,
                            const char *message);
void herd__handles_notify(herd_handle_table_t *t);

/* HERD_INPROGRESS, the final status, or HERD_ERR_NOT_FOUND. Lock-free. */
int herd__handles_poll(herd_handle_table_t *t, herd_handle_t handle);

/* Sleeps until the operation completes or `timeout_ms` passes (-1: forever). On completion
 * returns its status, sets this thread's last error to its message and releases the slot. */
int herd__handles_wait(herd_handle_table_t *t, herd_handle_t handle, int64_t timeout_ms);

/* The slot index a handle names (not validated: use only after a successful poll). */
static inline uint32_t herd__handles_index(herd_handle_t handle)
{
    return (uint32_t)((uint64_t)handle & ((UINT64_C(1) << HERD_HANDLE_INDEX_BITS) - 1));
}

/* Number of slots in use (tests, leak checks). */
uint32_t herd__handles_in_use(herd_handle_table_t *t);

#endif
