/* runtime.h - the one global instance and its init/teardown order.
 *
 * Init order: config -> handle table (made once, kept for the process's life so handles can be
 * waited on even after shutdown) -> control plane (MPI) -> backend -> registry -> queue ->
 * coordinator thread -> state RUNNING. Shutdown runs it backwards after the coordinator's last
 * round.
 *
 * Lock order (outer to inner): runtime lifecycle lock -> registry lock | queue lock | handle table
 * lock. The last three are leaves and are never held together.
 */
#ifndef HERD_RUNTIME_H
#define HERD_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend/backend.h"
#include "config.h"
#include "coordinator.h"
#include "ctrl.h"
#include "handle_table.h"
#include "request_queue.h"
#include "tensor_registry.h"

enum {
    HERD_STATE_UNINIT = 0,
    HERD_STATE_RUNNING = 1,
    HERD_STATE_STOPPING = 2,
    HERD_STATE_DEFUNCT = 3 /* a shutdown timed out: the coordinator is stuck; no restart */
};

typedef struct herd_runtime {
    pthread_mutex_t lifecycle; /* serialises init and shutdown */
    atomic_int state;
    atomic_int active_calls;    /* API calls between runtime_enter and runtime_leave */
    atomic_int rank, size, local_rank, local_size; /* -1 when not running */
    atomic_int handles_made;     /* set once under lifecycle; handles live until exit */
    herd_handle_table_t handles;
    herd_config_t config;        /* written under lifecycle before RUNNING; read-only after */
    herd_ctrl_t *ctrl;
    herd_backend_t *cpu_backend;
    herd_registry_t registry;
    herd_request_queue_t queue;
    herd_coordinator_t *coordinator;
    herd_timeline_t *timeline;
} herd_runtime_t;

herd_runtime_t *herd__runtime(void);

int herd__runtime_init(void);
int herd__runtime_shutdown(void);

/* Brackets an API call that uses the running instance (submit, declare). Returns HERD_OK, or
 * HERD_ERR_INVALID_USAGE (with a message) when herd is not running; then do not call leave. */
int herd__runtime_enter(herd_runtime_t *rt);
void herd__runtime_leave(herd_runtime_t *rt);

#endif
