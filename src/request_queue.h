/* request_queue.h - the requests API threads hand to the coordinator, and the FIFO that carries
 * them. A request lives in its handle's slot (handle_table.h); the queue links slot indices, so
 * submitting never allocates. */
#ifndef HERD_REQUEST_QUEUE_H
#define HERD_REQUEST_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct herd_tensor;

enum { HERD_KIND_ALLREDUCE = 0, HERD_KIND_BROADCAST = 1, HERD_NUM_KINDS = 2 };

/* No index: the end of a list. */
#define HERD_NO_INDEX UINT32_MAX

typedef struct herd_request {
    int kind;  /* HERD_KIND_* */
    int dtype; /* HERD_UINT8 ... */
    int op;    /* HERD_SUM ...; HERD_SUM for broadcasts */
    int root;  /* broadcast root; -1 for allreduce */
    int device;
    int64_t count;
    const void *sendbuf; /* allreduce input; broadcast buffer */
    void *recvbuf;       /* allreduce output (== sendbuf in place); broadcast buffer */
    struct herd_tensor *tensor;
} herd_request_t;

typedef struct herd_request_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;  /* the coordinator sleeps here */
    uint32_t head, tail;  /* guarded by lock */
    uint32_t count;       /* guarded by lock: requests between head and tail */
    int sleeping;         /* guarded by lock: the coordinator waits on cond */
    int kicked;           /* guarded by lock: a non-request event (shutdown) is waiting */
    atomic_uint pending;  /* queued requests; read without the lock to spin cheaply */
    uint32_t *next;       /* guarded by lock: link per handle index */
    uint32_t capacity;
} herd_request_queue_t;

int herd__queue_init(herd_request_queue_t *q, uint32_t capacity);
void herd__queue_destroy(herd_request_queue_t *q);

/* Appends `index`; wakes the coordinator if it sleeps. Any thread. */
void herd__queue_push(herd_request_queue_t *q, uint32_t index);

/* Wakes the coordinator for an event that is not a request (shutdown). Any thread. */
void herd__queue_kick(herd_request_queue_t *q);

/* Takes every queued index in FIFO order: returns the first (HERD_NO_INDEX if none); follow the
 * list with herd__queue_next. Coordinator only. */
uint32_t herd__queue_drain(herd_request_queue_t *q);
uint32_t herd__queue_next(const herd_request_queue_t *q, uint32_t index);

/* 1 if requests or a kick are waiting. Lock-free. */
int herd__queue_ready(herd_request_queue_t *q);

/* Sleeps until a request or kick arrives or `deadline_ns` (herd__clock_ns) passes. Returns at
 * once if one is already there. Coordinator only. */
void herd__queue_sleep(herd_request_queue_t *q, int64_t deadline_ns);

/* Clears and returns the kick flag. Coordinator only. */
int herd__queue_take_kick(herd_request_queue_t *q);

#endif
