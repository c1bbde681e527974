/* timeline.h - a Chrome trace (chrome://tracing, Perfetto) of every tensor's life.
 *
 * One row per tensor (a "thread" named after it, under this rank's "process"); phases QUEUED
 * (submit -> negotiation start), NEGOTIATE (-> ready on every rank, with a mark as ranks report
 * ready), then per group PACK, ALLREDUCE or BROADCAST (args: tensors and bytes in the group),
 * UNPACK. Events go through a bounded single-producer ring to a writer thread: when the ring is
 * full an event is dropped and counted, never waited for. The file is a JSON array, closed at a
 * normal shutdown; after a crash it is unterminated, which trace viewers accept.
 *
 * Threads: herd__timeline_* producers run under the coordinator's progress lock (one producer
 * at a time); the writer thread is the only consumer.
 */
#ifndef HERD_TIMELINE_H
#define HERD_TIMELINE_H

#include <stdint.h>

typedef struct herd_timeline herd_timeline_t;

enum {
    HERD_TL_QUEUED = 0,
    HERD_TL_NEGOTIATE,
    HERD_TL_PACK,
    HERD_TL_ALLREDUCE,
    HERD_TL_BROADCAST,
    HERD_TL_UNPACK,
    HERD_TL_ALLGATHER,
    HERD_TL_REDUCESCATTER,
    HERD_TL_ALLTOALL,
    HERD_TL_BARRIER,
    HERD_TL_JOIN,
    HERD_TL_MARK, /* instant: a rank reported ready (arg: the rank, -1 = all) */
    HERD_TL_NUM_PHASES
};

/* Opens the timeline at `path_pattern` for this rank: rank 0 writes it, unless the pattern
 * holds "%r", when every rank writes its own file with %r replaced by its rank. *out is NULL
 * (and HERD_OK returned) when this rank writes nothing. */
int herd__timeline_open(herd_timeline_t **out, const char *path_pattern, int rank);

/* Closes the JSON array, stops the writer and frees; logs how many events were dropped. */
void herd__timeline_close(herd_timeline_t *tl);

/* Records one phase of tensor `key` named `name` (name must outlive the timeline). start/end in
 * herd__clock_ns. For collectives, `a` = tensors in the group and `b` = bytes; for MARK, `a` is
 * the rank. Never blocks. */
void herd__timeline_event(herd_timeline_t *tl, int phase, int64_t key, const char *name,
                          int64_t start_ns, int64_t end_ns, int64_t a, int64_t b);

/* Events dropped so far because the ring was full. */
int64_t herd__timeline_dropped(herd_timeline_t *tl);

#endif
