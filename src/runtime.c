/* runtime.c - see runtime.h. */
#include "runtime.h"

#include <sched.h>
#include <stdlib.h>

#include "backend/gpu.h"
#include "counters.h"
#include "herd.h"
#include "log.h"
#include "status.h"
#include "util/clock.h"

static herd_runtime_t the_runtime = {
    .lifecycle = PTHREAD_MUTEX_INITIALIZER,
    .state = HERD_STATE_UNINIT,
    .rank = -1,
    .size = -1,
    .local_rank = -1,
    .local_size = -1,
};

herd_runtime_t *herd__runtime(void)
{
    return &the_runtime;
}

static const char *getenv_lookup(const char *name)
{
    return getenv(name);
}

int herd__runtime_enter(herd_runtime_t *rt)
{
    atomic_fetch_add(&rt->active_calls, 1);
    int state = atomic_load(&rt->state);
    if (state == HERD_STATE_RUNNING)
        return HERD_OK;
    atomic_fetch_sub(&rt->active_calls, 1);
    if (state == HERD_STATE_STOPPING)
        return herd__status_set(HERD_ERR_INVALID_USAGE, "herd is shutting down");
    if (state == HERD_STATE_DEFUNCT)
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "herd stopped after a herd_shutdown that timed out");
    return herd__status_set(HERD_ERR_INVALID_USAGE,
                            "herd is not initialised: call herd_init first");
}

void herd__runtime_leave(herd_runtime_t *rt)
{
    atomic_fetch_sub(&rt->active_calls, 1);
}

static void set_identity(herd_runtime_t *rt, int rank, int size, int local_rank, int local_size)
{
    atomic_store(&rt->rank, rank);
    atomic_store(&rt->size, size);
    atomic_store(&rt->local_rank, local_rank);
    atomic_store(&rt->local_size, local_size);
}

static int make_handles(herd_runtime_t *rt)
{
    if (atomic_load(&rt->handles_made)) {
        if (rt->handles.capacity != (uint32_t)rt->config.max_handles)
            HERD_LOG_WRN("HERD_MAX_HANDLES changed to %d after the first herd_init; keeping %u",
                         rt->config.max_handles, rt->handles.capacity);
        return HERD_OK;
    }
    int rc = herd__handles_init(&rt->handles, (uint32_t)rt->config.max_handles);
    if (rc != HERD_OK)
        return herd__status_set(rc, "cannot allocate %d operation slots",
                                rt->config.max_handles);
    atomic_store(&rt->handles_made, 1);
    return HERD_OK;
}

/* Starts everything after the control plane; on failure undoes what it did. */
static int start_engine(herd_runtime_t *rt)
{
    int rc = herd__backend_mpi_create(&rt->cpu_backend, herd__ctrl_world(rt->ctrl),
                                      &rt->config);
    if (rc != HERD_OK)
        return rc;
    rc = herd__timeline_open(&rt->timeline, rt->config.timeline, herd__ctrl_rank(rt->ctrl));
    if (rc != HERD_OK) {
        rt->cpu_backend->destroy(rt->cpu_backend);
        rt->cpu_backend = NULL;
        return rc;
    }
    herd__registry_init(&rt->registry);
    rc = herd__queue_init(&rt->queue, rt->handles.capacity);
    if (rc != HERD_OK) {
        rc = herd__status_set(rc, "cannot allocate the request queue");
        goto fail_queue;
    }
    herd_coordinator_deps_t deps = {.config = &rt->config, .ctrl = rt->ctrl,
                                    .cpu_backend = rt->cpu_backend, .handles = &rt->handles,
                                    .registry = &rt->registry, .queue = &rt->queue,
                                    .timeline = rt->timeline};
    rc = herd__coordinator_start(&rt->coordinator, &deps);
    if (rc == HERD_OK)
        return HERD_OK;
    herd__queue_destroy(&rt->queue);
fail_queue:
    herd__registry_destroy(&rt->registry);
    herd__timeline_close(rt->timeline);
    rt->timeline = NULL;
    rt->cpu_backend->destroy(rt->cpu_backend);
    rt->cpu_backend = NULL;
    return rc;
}

/* The coordinator thread inherits the caller's CPU mask. Pinned to one core (Open MPI binds each
 * rank to a core by default), it competes with the training loop for that core: rank 0 says so
 * once, naming the fix. */
static void warn_single_core_affinity(int rank)
{
    cpu_set_t mask;
    if (rank != 0 || sched_getaffinity(0, sizeof mask, &mask) != 0 || CPU_COUNT(&mask) != 1)
        return;
    int cpu = -1;
    for (int c = 0; c < CPU_SETSIZE && cpu < 0; c++)
        if (CPU_ISSET(c, &mask))
            cpu = c;
    HERD_LOG_WRN("this process is bound to a single core (cpu %d), which herd's coordinator "
                 "thread shares with the caller; launch with herdrun, or mpirun --bind-to none "
                 "(or bind each rank to 2 or more cores)",
                 cpu);
}

/* A herd_init that failed after starting MPI leaves it up for a retry; if none succeeds, MPI is
 * finalised when the process exits. Not while herd runs: its threads would still use MPI. */
static void finalize_leftover_mpi(void)
{
    if (atomic_load(&the_runtime.state) == HERD_STATE_UNINIT)
        herd__ctrl_finalize_leftover();
}

int herd__runtime_init(void)
{
    herd_runtime_t *rt = &the_runtime;
    pthread_mutex_lock(&rt->lifecycle);
    static int exit_hook;
    if (!exit_hook && atexit(finalize_leftover_mpi) == 0)
        exit_hook = 1;
    int rc = HERD_OK;
    int state = atomic_load(&rt->state);
    if (state == HERD_STATE_DEFUNCT) {
        rc = herd__status_set(HERD_ERR_INVALID_USAGE,
                              "herd cannot start again: an earlier herd_shutdown timed out");
        goto out;
    }
    if (state != HERD_STATE_UNINIT) {
        rc = herd__status_set(HERD_ERR_INVALID_USAGE, "herd is already initialised");
        goto out;
    }
    rc = herd__config_parse(&rt->config, getenv_lookup);
    if (rc != HERD_OK)
        goto out;
    herd__counters_reset();
    herd__log_setup(rt->config.log_level, -1);
    rc = make_handles(rt);
    if (rc == HERD_OK)
        rc = herd__gpu_init(rt->handles.capacity);
    if (rc != HERD_OK)
        goto out;
    rc = herd__ctrl_open(&rt->ctrl, rt->config.shm);
    if (rc != HERD_OK)
        goto out;
    /* The backend logs while it starts (the shared-memory plane): under this rank's number. */
    herd__log_setup(rt->config.log_level, herd__ctrl_rank(rt->ctrl));
    rc = start_engine(rt);
    if (rc != HERD_OK) {
        herd__ctrl_release(rt->ctrl, 0);
        rt->ctrl = NULL;
        goto out;
    }
    set_identity(rt, herd__ctrl_rank(rt->ctrl), herd__ctrl_size(rt->ctrl),
                 herd__ctrl_local_rank(rt->ctrl), herd__ctrl_local_size(rt->ctrl));
    atomic_store(&rt->state, HERD_STATE_RUNNING);
    HERD_LOG_INF("herd %s up: rank %d of %d (local %d of %d), fusion threshold %lld bytes",
                 HERD_VERSION_STRING, atomic_load(&rt->rank), atomic_load(&rt->size),
                 atomic_load(&rt->local_rank), atomic_load(&rt->local_size),
                 (long long)rt->config.fusion_threshold);
    warn_single_core_affinity(atomic_load(&rt->rank));
    herd__status_clear();
out:
    pthread_mutex_unlock(&rt->lifecycle);
    return rc;
}

int herd__runtime_shutdown(void)
{
    herd_runtime_t *rt = &the_runtime;
    pthread_mutex_lock(&rt->lifecycle);
    if (atomic_load(&rt->state) != HERD_STATE_RUNNING) {
        pthread_mutex_unlock(&rt->lifecycle);
        herd__status_clear();
        return HERD_OK;
    }
    atomic_store(&rt->state, HERD_STATE_STOPPING);
    int64_t timeout_ns = rt->config.shutdown_timeout_ms > 0
                             ? rt->config.shutdown_timeout_ms * 1000000 : -1;
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : herd__clock_ns() + timeout_ns;
    /* Submissions already past the state check finish queueing before the last round; a
     * waiter driving rounds hands back once its round is done. */
    while (atomic_load(&rt->active_calls) > 0 && herd__clock_ns() < deadline)
        sched_yield();
    int64_t left = deadline - herd__clock_ns();
    int rc = herd__coordinator_join(rt->coordinator, timeout_ns < 0 ? -1 : left > 0 ? left : 0,
                                    rt->config.shutdown_timeout_ms);
    if (rc == HERD_ERR_TIMEOUT) {
        /* The stuck thread still uses everything: leave it all in place, and refuse restarts. */
        HERD_LOG_ERR("%s", herd__status_last());
        set_identity(rt, -1, -1, -1, -1);
        atomic_store(&rt->state, HERD_STATE_DEFUNCT);
        pthread_mutex_unlock(&rt->lifecycle);
        return rc;
    }
    rt->coordinator = NULL;
    herd__timeline_close(rt->timeline); /* before the registry: events point at its names */
    rt->timeline = NULL;
    herd__queue_destroy(&rt->queue);
    herd__registry_destroy(&rt->registry);
    rt->cpu_backend->destroy(rt->cpu_backend);
    rt->cpu_backend = NULL;
    herd__ctrl_release(rt->ctrl, 1);
    rt->ctrl = NULL;
    set_identity(rt, -1, -1, -1, -1);
    atomic_store(&rt->state, HERD_STATE_UNINIT);
    if (rc == HERD_OK)
        herd__status_clear();
    pthread_mutex_unlock(&rt->lifecycle);
    return rc;
}
