/* counters.c - see counters.h. */
#include "counters.h"

#include <stdatomic.h>
#include <string.h>

static _Atomic int64_t counters[HERD_NUM_COUNTERS];

static const char *const names[HERD_NUM_COUNTERS] = {
    [HERD_CTR_OPS] = "ops",
    [HERD_CTR_ROUNDS] = "rounds",
    [HERD_CTR_ROUNDS_IDLE] = "rounds_idle",
    [HERD_CTR_ROUNDS_CALLER] = "rounds_on_caller",
    [HERD_CTR_ROUNDS_PATIENT] = "rounds_patient",
    [HERD_CTR_WAKES_SENT] = "wakes_sent",
    [HERD_CTR_WAKES_LIVE] = "wakes_live",
    [HERD_CTR_WAKES_STALE] = "wakes_stale",
    [HERD_CTR_DRIVES] = "drives",
    [HERD_CTR_DRIVE_BUSY] = "drive_busy",
    [HERD_CTR_HANDOFFS] = "handoffs",
    [HERD_CTR_COORD_SIGNALS] = "coordinator_signals",
    [HERD_CTR_COORD_TIMEOUTS] = "coordinator_timeouts",
};

void herd__counter_add(herd_counter_id_t id, int64_t n)
{
    atomic_fetch_add_explicit(&counters[id], n, memory_order_relaxed);
}

void herd__counters_reset(void)
{
    for (int i = 0; i < HERD_NUM_COUNTERS; i++)
        atomic_store_explicit(&counters[i], 0, memory_order_relaxed);
}

int herd__counter_find(const char *name)
{
    for (int i = 0; i < HERD_NUM_COUNTERS; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

int64_t herd__counter_get(herd_counter_id_t id)
{
    return atomic_load_explicit(&counters[id], memory_order_relaxed);
}

const char *herd__counter_name(int id)
{
    return id >= 0 && id < HERD_NUM_COUNTERS ? names[id] : NULL;
}
