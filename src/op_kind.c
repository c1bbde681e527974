/* op_kind.c - see op_kind.h. */
#include "op_kind.h"

#include <stddef.h>

#include "timeline.h"

static const herd_kind_info_t kinds[HERD_NUM_KINDS] = {
    /*                     name          reduces root varies row fuses cached data timeline */
    [HERD_KIND_ALLREDUCE] = {"allreduce", 1, 0, 0, 0, 1, 1, 1, HERD_TL_ALLREDUCE},
    [HERD_KIND_BROADCAST] = {"broadcast", 0, 1, 0, 0, 1, 1, 1, HERD_TL_BROADCAST},
    [HERD_KIND_ALLGATHER] = {"allgather", 0, 0, 0, 0, 1, 1, 1, HERD_TL_ALLGATHER},
    /* Per-rank counts make byte sizes differ between ranks, and fusion plans must not. */
    [HERD_KIND_ALLGATHERV] = {"allgatherv", 0, 0, 1, 1, 0, 1, 1, HERD_TL_ALLGATHER},
    [HERD_KIND_REDUCESCATTER] = {"reducescatter", 1, 0, 0, 1, 1, 1, 1, HERD_TL_REDUCESCATTER},
    [HERD_KIND_ALLTOALL] = {"alltoall", 0, 0, 0, 0, 0, 1, 1, HERD_TL_ALLTOALL},
    [HERD_KIND_ALLTOALLV] = {"alltoallv", 0, 0, 1, 1, 0, 1, 1, HERD_TL_ALLTOALL},
    [HERD_KIND_BARRIER] = {"barrier", 0, 0, 0, 0, 0, 1, 0, HERD_TL_BARRIER},
    /* Which ranks have joined is the negotiator's state: a join always travels by name. */
    [HERD_KIND_JOIN] = {"join", 0, 0, 0, 0, 0, 0, 0, HERD_TL_JOIN},
};

const herd_kind_info_t *herd__kind(int kind)
{
    return herd__kind_valid(kind) ? &kinds[kind] : NULL;
}
