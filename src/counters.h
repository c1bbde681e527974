/* counters.h - process-wide event counters, for finding where latency goes.
 *
 * Relaxed atomic increments on paths that already take a lock or call MPI: cheap enough to stay
 * on in every build. Reset by herd_init; read through herd_counter. Names are the public
 * contract (docs/performance.md lists them); the enum order is not.
 */
#ifndef HERD_COUNTERS_H
#define HERD_COUNTERS_H

#include <stdint.h>

typedef enum herd_counter_id {
    HERD_CTR_OPS,            /* operations completed (any status) */
    HERD_CTR_ROUNDS,         /* negotiation rounds run */
    HERD_CTR_ROUNDS_IDLE,    /* rounds that completed no operation */
    HERD_CTR_ROUNDS_CALLER,  /* rounds run by an application thread that drove its own wait */
    HERD_CTR_ROUNDS_PATIENT, /* rounds negotiated with a nonblocking allreduce, waited for
                              * without holding a core */
    HERD_CTR_WAKES_SENT,     /* wake broadcasts sent (one per round this rank started) */
    HERD_CTR_WAKES_LIVE,     /* wake messages received that started a round here */
    HERD_CTR_WAKES_STALE,    /* wake messages received for a round that had already run */
    HERD_CTR_DRIVES,         /* waits that took the progress lock to drive rounds */
    HERD_CTR_DRIVE_BUSY,     /* waits that found another thread driving */
    HERD_CTR_HANDOFFS,       /* waits that slept on the handle table with the op in flight */
    HERD_CTR_COORD_SIGNALS,  /* times the coordinator thread was woken by this process */
    HERD_CTR_COORD_TIMEOUTS, /* times the coordinator thread woke on its idle-poll timer */
    HERD_NUM_COUNTERS
} herd_counter_id_t;

void herd__counter_add(herd_counter_id_t id, int64_t n);
static inline void herd__count(herd_counter_id_t id) { herd__counter_add(id, 1); }

/* Zeroes every counter (herd_init). */
void herd__counters_reset(void);

/* The counter named `name`, or -1 when there is none. */
int herd__counter_find(const char *name);
int64_t herd__counter_get(herd_counter_id_t id);
/* The name of counter `id`; NULL past the last. */
const char *herd__counter_name(int id);

#endif
