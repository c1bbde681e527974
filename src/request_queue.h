/* request_queue.h - the requests API threads hand to the coordinator, and the FIFO that carries
 * them. A request lives in its handle's slot (handle_table.h); the queue links slot indices, so
 * submitting never allocates. */
#ifndef HERD_REQUEST_QUEUE_H
#define HERD_REQUEST_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "op_kind.h"

struct herd_tensor;

/* No index: the end of a list. */
#define HERD_NO_INDEX UINT32_MAX

typedef struct herd_request {
    int kind;  /* HERD_KIND_* (op_kind.h) */
    int dtype; /* HERD_UINT8 ... */
    int op;    /* HERD_SUM ...; HERD_SUM for kinds that do not reduce */
    int root;  /* broadcast root; -1 for other kinds */
    int device;
    int64_t count; /* elements this rank sends (allreduce, broadcast: of the tensor; allgather:
                      this rank's part; reducescatter: the whole input; alltoall: all blocks) */
    int64_t row;   /* elements per row: reducescatter's split and the variable kinds' unit */
    double prescale, postscale; /* allreduce and reducescatter; 1.0 otherwise */
    const void *sendbuf; /* input; broadcast buffer */
    void *recvbuf;       /* output (== sendbuf in place); broadcast buffer */
    /* Variable-size kinds, all the caller's, written only on success: */
    const int64_t *sendcounts; /* alltoallv: per destination */
    int64_t *counts_out;       /* allgatherv: every rank's count; alltoallv: received counts */
    void **recvbuf_out;        /* allgatherv, alltoallv: the buffer herd allocated */
    int *last_rank_out;        /* join */
    struct herd_tensor *tensor;
    int64_t submit_ns; /* when the API thread queued it (for the timeline) */
    int64_t intake_ns; /* when negotiation started: under the progress lock */
} herd_request_t;

typedef struct herd_request_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;  /* the coordinator thread sleeps here */
    uint32_t head, tail;  /* guarded by lock */
    uint32_t count;       /* guarded by lock: requests between head and tail */
    int sleeping;         /* guarded by lock: the coordinator thread waits on cond */
    int nudged;           /* guarded by lock: a wake that is not a request */
    atomic_uint pending;  /* queued requests; read without the lock to spin cheaply */
    /* 1 while an application thread drives progress itself: it will drain the queue, so
     * submitters need not wake the coordinator thread. */
    atomic_int driving;
    /* 1 when a request was queued while the coordinator thread slept and nobody woke it (see
     * herd__queue_push). */
    atomic_int unsignaled;
    /* 1 from a herd_join's submission until it completes: this rank submits nothing else. */
    atomic_int joined;
    uint32_t *next;       /* guarded by lock: link per handle index */
    uint32_t capacity;
} herd_request_queue_t;

int herd__queue_init(herd_request_queue_t *q, uint32_t capacity);
void herd__queue_destroy(herd_request_queue_t *q);

/* Appends `index` and wakes the coordinator thread if it sleeps and nobody drives. Waking a
 * thread costs 30-50 us on a busy machine, and a thread that submits and then waits would rather
 * run the round itself (herd__coordinator_drive). So with `defer` set (the submitting thread
 * drove its last wait to completion) the first request queued while the coordinator sleeps does
 * not wake it: the next submission does, or the next wait or poll (herd__queue_flush), or the
 * coordinator's own idle timeout (HERD_IDLE_POLL_US), whichever comes first. */
void herd__queue_push(herd_request_queue_t *q, uint32_t index, int defer);

/* Appends `n` indices at once (a group: herd_group_end), so the coordinator takes them all in
 * the same intake. Wakes like herd__queue_push without `defer`. */
void herd__queue_push_many(herd_request_queue_t *q, const uint32_t *indices, uint32_t n);

/* Wakes the coordinator thread if a request is queued that it was not told about. Cheap when
 * there is none (one atomic exchange). Any thread. */
void herd__queue_flush(herd_request_queue_t *q);

/* Wakes the coordinator thread for an event that is not a request (shutdown, hand-over). */
void herd__queue_nudge(herd_request_queue_t *q);

/* Takes every queued index in FIFO order: returns the first (HERD_NO_INDEX if none); follow the
 * list with herd__queue_next. Caller holds the coordinator's progress lock. */
uint32_t herd__queue_drain(herd_request_queue_t *q);
uint32_t herd__queue_next(const herd_request_queue_t *q, uint32_t index);

/* 1 if requests are waiting. Lock-free. */
int herd__queue_ready(herd_request_queue_t *q);

/* Sleeps until a nudge, a request (unless `requests_too` is 0) or `deadline_ns`
 * (herd__clock_ns) passes. Clears the nudge. Returns 1 if woken, 0 on the deadline.
 * Coordinator thread only. */
int herd__queue_sleep(herd_request_queue_t *q, int64_t deadline_ns, int requests_too);

#endif
