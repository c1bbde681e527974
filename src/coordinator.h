/* coordinator.h - the one background thread that talks to other ranks.
 *
 * THE INVARIANT: every rank issues the same collectives in the same order. Everything the
 * coordinator decides about collectives is derived from data every rank holds identically (the
 * results of the round's own collectives, fed to the replicated negotiator), never from local
 * timing. Local state only decides *when* a rank asks for a round, and a round always involves
 * every rank.
 */
#ifndef HERD_COORDINATOR_H
#define HERD_COORDINATOR_H

#include <stdint.h>

#include "backend/backend.h"
#include "config.h"
#include "ctrl.h"
#include "handle_table.h"
#include "request_queue.h"
#include "tensor_registry.h"
#include "timeline.h"

typedef struct herd_coordinator herd_coordinator_t;

/* What the coordinator works with; owned by the runtime, which outlives the coordinator. */
typedef struct herd_coordinator_deps {
    const herd_config_t *config;
    herd_ctrl_t *ctrl;
    herd_backend_t *cpu_backend;
    herd_handle_table_t *handles;
    herd_registry_t *registry;
    herd_request_queue_t *queue;
    herd_timeline_t *timeline; /* NULL when off */
} herd_coordinator_deps_t;

/* Allocates the coordinator's tables and starts its thread ("herd-coord"). */
int herd__coordinator_start(herd_coordinator_t **out, const herd_coordinator_deps_t *deps);

/* Lets the calling application thread run rounds itself until `handle` completes. Returns at
 * once when another application thread is driving; when the coordinator thread is, waits for
 * it to let go until `deadline_ns` (herd__clock_ns; < 0: no deadline): its round may leave
 * this op pending, and then this thread drives the next rounds itself instead of sleeping
 * until the coordinator thread next looks. Returns 1 if it ran a round. The caller must keep
 * the coordinator alive meanwhile (runtime_enter). */
int herd__coordinator_drive(herd_coordinator_t *c, herd_handle_t handle, int64_t deadline_ns);

/* Asks for shutdown, waits up to `timeout_ns` (< 0: forever) for the thread to finish its last
 * round, and frees the coordinator. Every operation still pending has completed when this
 * returns HERD_OK. On HERD_ERR_TIMEOUT the thread is still inside a round (a peer stopped
 * answering): it is detached and everything it uses must be left alive. */
int herd__coordinator_join(herd_coordinator_t *c, int64_t timeout_ns, int64_t configured_ms);

#endif
