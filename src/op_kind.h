/* op_kind.h - the one table of operation kinds (STYLE K1).
 *
 * What differs between allreduce, broadcast, allgather, reduce-scatter, all-to-all, barrier and
 * join is written here once: which attributes every rank must agree on, whether the count may
 * differ per rank (and is exchanged instead), whether ready ops of the kind fuse, whether its
 * name may be cached, and the words used for it in messages and the timeline. The negotiator,
 * the fusion planner, the API checks and the coordinator ask this table; the data movement of
 * each kind lives behind the backend vtable (backend/backend.h).
 */
#ifndef HERD_OP_KIND_H
#define HERD_OP_KIND_H

#include <stdint.h>

enum {
    HERD_KIND_ALLREDUCE = 0,
    HERD_KIND_BROADCAST = 1,
    HERD_KIND_ALLGATHER = 2,
    HERD_KIND_ALLGATHERV = 3,
    HERD_KIND_REDUCESCATTER = 4,
    HERD_KIND_ALLTOALL = 5,
    HERD_KIND_ALLTOALLV = 6,
    HERD_KIND_BARRIER = 7,
    HERD_KIND_JOIN = 8,
    HERD_NUM_KINDS = 9
};

typedef struct herd_kind_info {
    const char *name;    /* "allreduce": messages and the timeline */
    int reduces;         /* an op (SUM...) applies and must agree */
    int has_root;        /* a root rank applies and must agree; else root is -1 */
    int count_varies;    /* counts differ per rank: exchanged at run time, never checked */
    int has_row;         /* elements per row agree across ranks (else row is 1) */
    int fuses;           /* ready ops of one class may share one collective */
    int cached;          /* a name that agreed gets a cache slot (else: by name every time) */
    int has_data;        /* moves data (barrier and join do not) */
    int tl_phase;        /* its collective's span in the timeline (HERD_TL_*) */
} herd_kind_info_t;

/* The entry for `kind`; NULL when kind is not a HERD_KIND_*. */
const herd_kind_info_t *herd__kind(int kind);

/* 1 when `kind` is a HERD_KIND_*. */
static inline int herd__kind_valid(int kind)
{
    return kind >= 0 && kind < HERD_NUM_KINDS;
}

/* Reduce-scatter's split of `rows` rows over `size` ranks (Horovod's): rank r gets rows / size
 * rows, plus one when r < rows % size; its first row is at herd__rs_first_row. */
static inline int64_t herd__rs_rows(int64_t rows, int size, int rank)
{
    return rows / size + (rank < rows % size ? 1 : 0);
}
static inline int64_t herd__rs_first_row(int64_t rows, int size, int rank)
{
    int64_t extra = rows % size;
    return (int64_t)rank * (rows / size) + (rank < extra ? rank : extra);
}

#endif
