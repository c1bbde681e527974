/* coordinator.c - the coordinator thread.
 *
 * DESIGN
 * What runs where: API threads validate a call, fill the request inside its handle slot and push
 * the slot index on the request queue. Rounds run under the progress lock, on the coordinator
 * thread ("herd-coord") or on an application thread that waits without a deadline and finds
 * nobody else driving: only the holder of the progress lock calls MPI after init. Waiters that
 * do not drive sleep on the handle table's condition variable.
 *
 * A round, identical on every rank (see the invariant in coordinator.h):
 *   1. one MPI_Allreduce(BAND) of [~or_flags, and_flags, ready bits...]: the AND of the ready
 *      bit-vector says which cached tensors every rank has submitted; the inverted first word
 *      ORs "someone has name requests"; the second ANDs "everyone asked to shut down";
 *   2. only if someone has name requests: an MPI_Allgather of their sizes and an
 *      MPI_Allgatherv of the requests themselves;
 *   3. the replicated negotiator turns these into cache slots, mismatches and the ordered list
 *      of ready tensors, the same on every rank;
 *   4. the fusion planner (pure, same input, same plan) groups the ready tensors and each group
 *      is one collective on the data-plane communicator.
 *
 * When to run a round: a rank that has something new (a submission, a re-announcement after an
 * eviction, a shutdown request) runs one and sends a wake message to every other rank. An idle
 * rank's coordinator thread sleeps on the queue's condition variable, waking at most every
 * HERD_IDLE_POLL_US (backing off from 20 us) to test for a wake message, or at once when told
 * about a submission (see herd__queue_push for when it is told). A rank whose submissions all
 * wait on other ranks has nothing new, so it sleeps too: nobody spins while a straggler
 * computes.
 *
 * What may block: MPI calls (a round waits for the slowest rank to join). No lock but the
 * progress lock is held across an MPI call. Lock order: progress -> registry | queue | handle
 * table (the last three are leaves, never held together).
 * GPU groups do not block: once issued on the device their ops complete when poll_device_ops,
 * called from the progress loop, finds them done.
 */
#include "coordinator.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/gpu.h"
#include "dtype.h"
#include "fusion.h"
#include "herd.h"
#include "log.h"
#include "negotiate.h"
#include "status.h"
#include "util/clock.h"
#include "util/thread.h"

enum { OR_NAMES = 1, OR_STALL_CHECK = 2 }; /* word 0 (inverted): someone has name requests;
                                            someone asks for a stall check */
enum { AND_SHUTDOWN = 1 }; /* word 1: everyone asked to shut down */
enum { HEADER_WORDS = 2 };
enum { FIRST_SLEEP_NS = 20000 };
enum { GPU_POLL_NS = 200000 }; /* longest sleep while GPU ops run on the device */

struct herd_coordinator {
    herd_coordinator_deps_t d;
    pthread_t thread;
    /* Everything below except `stop` is guarded by progress: held by whoever runs rounds. */
    pthread_mutex_t progress;
    atomic_int stop;  /* herd_shutdown was called on this rank */
    int64_t spin_ns;
    int rank, size;
    herd_negotiator_t neg;
    int64_t epoch;           /* rounds run so far: the same on every rank */
    uint64_t *ready_bits;    /* this rank's submitted cached slots */
    int64_t ready_words_cap;
    uint64_t *round_words;   /* the round's allreduce buffer */
    int64_t round_words_cap;
    char *outbox;            /* name requests for the next round */
    size_t outbox_len, outbox_cap;
    herd_tensor_t **reannounce; /* ops whose slot was evicted: ask by name next round */
    int64_t nreannounce;
    int shutdown_asked; /* this rank asked to shut down */
    int64_t npending;   /* ops taken from the queue and not finished */
    int64_t stall_interval_ns; /* 0: the stall inspector is off */
    int64_t last_stall_check_ns;
    const uint64_t **rank_bits; /* per rank, into the stall check's gathered data */
    uint64_t *stall_out;        /* this rank's stall check contribution */
    int64_t stall_out_cap;
    int broken;         /* the control plane failed: no more collectives */
    char broken_why[HERD_ERRMSG_MAX];
    /* execution scratch, one entry per possible in-flight op */
    int64_t capacity;
    herd_fusion_item_t *items;
    uint32_t *item_op;
    int64_t *order;
    herd_fusion_group_t *groups;
    herd_fusion_scratch_t scratch;
    const void **srcs;
    void **dsts;
    int64_t *sizes;
    int64_t phase_ns[3]; /* timeline: pack, collective, unpack time of the running group */
    uint32_t *group_ops; /* handle indices of the running group's members */
    herd_backend_t *gpu_backend; /* started by the first GPU group */
    int gpu_device;              /* the CUDA device it drives, -1 before */
    /* GPU ops issued and not yet complete on the device, in issue order (gpu_backend->poll_op).
     * Their names stay in flight; their ready bits are already cleared. */
    uint32_t *device_ops;
    int64_t ndevice_ops;
    unsigned char *on_device; /* per handle index: in device_ops */
};

/* ---- small helpers ---------------------------------------------------------------------- */

static herd_request_t *request_of(herd_coordinator_t *c, uint32_t index)
{
    return herd__handles_request(c->d.handles, index);
}

static herd_attrs_t attrs_of(const herd_request_t *r)
{
    return (herd_attrs_t){.count = r->count, .kind = r->kind, .dtype = r->dtype, .op = r->op,
                          .root = r->root, .device = r->device};
}

static void set_bit(uint64_t *bits, int64_t i) { bits[i / 64] |= UINT64_C(1) << (i % 64); }
static void clear_bit(uint64_t *bits, int64_t i) { bits[i / 64] &= ~(UINT64_C(1) << (i % 64)); }

/* Grows an array of `elem`-sized entries to hold `need`, zeroing the new part. */
static int ensure(void **array, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return HERD_OK;
    int64_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    char *p = realloc(*array, (size_t)c * elem);
    if (p == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "coordinator tables cannot grow to %lld",
                                (long long)c);
    memset(p + (size_t)*cap * elem, 0, (size_t)(c - *cap) * elem);
    *array = p;
    *cap = c;
    return HERD_OK;
}

/* Completes one op: the name is free for resubmission before the waiter can see the status. */
static void finish_op(herd_coordinator_t *c, uint32_t index, int status, const char *message)
{
    herd_request_t *r = request_of(c, index);
    herd_tensor_t *t = r->tensor;
    if (t->announced_by_bit && t->slot >= 0)
        clear_bit(c->ready_bits, t->slot);
    t->pending = HERD_NO_INDEX;
    t->announced_by_bit = 0;
    c->d.handles->slots[index].coordinator_owned = 0;
    c->npending--;
    atomic_store(&t->inflight, 0);
    herd__handles_complete(c->d.handles, index, status, message);
}

/* ---- intake ------------------------------------------------------------------------------ */

static int announce_by_name(herd_coordinator_t *c, herd_tensor_t *t, const herd_request_t *r)
{
    herd_wire_request_t w = {.attrs = attrs_of(r), .priority = t->key, .evict_slot = t->slot,
                             .name = t->name, .name_len = t->name_len};
    while (herd__wire_encode(c->outbox, c->outbox_cap, &c->outbox_len, &w) != 0) {
        size_t cap = c->outbox_cap ? c->outbox_cap * 2 : 65536;
        char *p = realloc(c->outbox, cap);
        if (p == NULL)
            return herd__status_set(HERD_ERR_NO_MEMORY, "cannot grow the negotiation outbox");
        c->outbox = p;
        c->outbox_cap = cap;
    }
    t->announced_by_bit = 0;
    return HERD_OK;
}

/* Takes one submitted op into negotiation: a bit if its name is cached with the same
 * attributes, else a name request. */
static void intake(herd_coordinator_t *c, uint32_t index)
{
    herd_request_t *r = request_of(c, index);
    herd_tensor_t *t = r->tensor;
    t->pending = index;
    c->d.handles->slots[index].coordinator_owned = 1;
    c->npending++;
    if (c->d.timeline != NULL) {
        r->intake_ns = herd__clock_ns();
        herd__timeline_event(c->d.timeline, HERD_TL_QUEUED, t->key, t->name, r->submit_ns,
                             r->intake_ns, 0, 0);
    }
    if (c->broken) {
        finish_op(c, index, HERD_ERR_BACKEND, c->broken_why);
        return;
    }
    if (t->slot >= 0) {
        herd_attrs_t a = attrs_of(r);
        if (herd__attrs_agree(&c->neg.slots[t->slot].attrs, &a)) {
            set_bit(c->ready_bits, t->slot);
            t->announced_by_bit = 1;
            return;
        }
    }
    if (announce_by_name(c, t, r) != HERD_OK)
        finish_op(c, index, HERD_ERR_NO_MEMORY, herd__status_last());
}

static void intake_all(herd_coordinator_t *c)
{
    herd_request_queue_t *q = c->d.queue;
    /* Read the stop flag before draining: every submission made before herd_shutdown was
     * queued before the flag was set, so it is taken into this round with the shutdown. */
    if (atomic_load(&c->stop))
        c->shutdown_asked = 1;
    for (uint32_t i = herd__queue_drain(q); i != HERD_NO_INDEX;) {
        uint32_t next = herd__queue_next(q, i);
        intake(c, i);
        i = next;
    }
    for (int64_t i = 0; i < c->nreannounce; i++) {
        herd_tensor_t *t = c->reannounce[i];
        if (t->pending != HERD_NO_INDEX &&
            announce_by_name(c, t, request_of(c, t->pending)) != HERD_OK)
            finish_op(c, t->pending, HERD_ERR_NO_MEMORY, herd__status_last());
    }
    c->nreannounce = 0;
}

/* ---- execution --------------------------------------------------------------------------- */

/* The data plane for a group: the host's, or the GPU's, started on first use. Starting it is
 * collective, and every rank reaches it in the same group, since plans are identical. */
static herd_backend_t *backend_for(herd_coordinator_t *c, const herd_request_t *first, int *rc)
{
    *rc = HERD_OK;
    if (first->device < 0)
        return c->d.cpu_backend;
    if (c->gpu_backend == NULL)
        *rc = herd__gpu_backend_create(&c->gpu_backend, c->d.ctrl, c->d.config, first->device,
                                       c->d.cpu_backend);
    if (*rc == HERD_OK && c->gpu_device != -1 && c->gpu_device != first->device)
        *rc = herd__status_set(HERD_ERR_NOT_SUPPORTED,
                               "tensor '%s' is on CUDA device %d, but this process already "
                               "uses device %d: herd drives one GPU per process",
                               first->tensor->name, first->device, c->gpu_device);
    if (*rc == HERD_OK)
        c->gpu_device = first->device;
    return c->gpu_backend; /* even after a local failure: before_group agrees on it */
}

/* An op issued on the device: its ready bit is cleared, so no round runs it again, while its
 * name stays in flight until poll_device_ops completes it. */
static void on_device(herd_coordinator_t *c, uint32_t index)
{
    herd_tensor_t *t = request_of(c, index)->tensor;
    if (t->announced_by_bit && t->slot >= 0)
        clear_bit(c->ready_bits, t->slot);
    t->announced_by_bit = 0;
    c->on_device[index] = 1;
    c->device_ops[c->ndevice_ops++] = index;
}

/* Completes the device ops that are done, in issue order; stops at the first still running. */
static void poll_device_ops(herd_coordinator_t *c)
{
    if (c->ndevice_ops == 0)
        return;
    herd_backend_t *be = c->gpu_backend;
    int64_t done = 0;
    char message[HERD_ERRMSG_MAX];
    for (; done < c->ndevice_ops; done++) {
        uint32_t index = c->device_ops[done];
        int status = be->poll_op(be, index);
        if (status == HERD_INPROGRESS)
            break;
        message[0] = '\0';
        if (status != HERD_OK) {
            snprintf(message, sizeof message, "tensor '%s': %s", request_of(c, index)->tensor->name,
                     herd__status_last());
            HERD_LOG_ERR("%s", message);
        }
        c->on_device[index] = 0;
        finish_op(c, index, status, message);
    }
    if (done == 0)
        return;
    memmove(c->device_ops, c->device_ops + done,
            (size_t)(c->ndevice_ops - done) * sizeof *c->device_ops);
    c->ndevice_ops -= done;
    herd__handles_notify(c->d.handles);
}

/* Before failing what is in flight: device ops complete first (bounded by the backend's
 * timeout, after which it aborts), since the device may still use their buffers. */
static void drain_device_ops(herd_coordinator_t *c)
{
    while (c->ndevice_ops > 0) {
        poll_device_ops(c);
        if (c->ndevice_ops > 0) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Runs one planned group: one collective, on the tensor in place or on the fusion buffer. */
static int run_collective(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g)
{
    const uint32_t *ops = c->item_op;
    const int64_t *member = &c->order[g->first];
    herd_request_t *first = request_of(c, ops[member[0]]);
    if (g->bytes == 0)
        return HERD_OK;
    if (!g->fused) {
        if (first->kind == HERD_KIND_ALLREDUCE)
            return be->allreduce(be, first->sendbuf, first->recvbuf, first->count, first->dtype,
                                 first->op);
        return be->broadcast(be, first->recvbuf, first->count, first->dtype, first->root);
    }
    for (int64_t i = 0; i < g->count; i++) {
        herd_request_t *r = request_of(c, ops[member[i]]);
        c->srcs[i] = r->sendbuf;
        c->dsts[i] = r->recvbuf;
        c->sizes[i] = r->count * (int64_t)herd__dtype_size(r->dtype);
    }
    /* The group travels in pieces of HERD_CHUNK_BYTES: each piece is packed, reduced and
     * unpacked while it is still in cache, so the fusion buffer stays small and a big group does
     * not stream through main memory three times. */
    int64_t esize = (int64_t)herd__dtype_size(first->dtype);
    int64_t chunk = be == c->d.cpu_backend ? c->d.config->chunk_bytes : 0; /* GPU: whole */
    int64_t piece = chunk > 0 ? chunk : g->bytes;
    piece = piece < g->bytes ? piece - piece % esize : g->bytes;
    if (piece < esize)
        piece = esize;
    void *buf = NULL;
    int rc = be->fusion_buffer(be, (size_t)piece, &buf);
    if (rc != HERD_OK)
        return rc;
    int is_root = first->kind == HERD_KIND_BROADCAST && c->rank == first->root;
    int pack = first->kind == HERD_KIND_ALLREDUCE || is_root;
    int unpack = first->kind == HERD_KIND_ALLREDUCE || !is_root;
    herd_fusion_cursor_t in = {0, 0}, out = {0, 0};
    int timed = c->d.timeline != NULL;
    for (int64_t done = 0; done < g->bytes && rc == HERD_OK; done += piece) {
        int64_t n = g->bytes - done < piece ? g->bytes - done : piece;
        int64_t t0 = timed ? herd__clock_ns() : 0;
        if (pack)
            herd__fusion_pack_range(buf, c->srcs, c->sizes, g->count, &in, n, be->copy, be);
        int64_t t1 = timed ? herd__clock_ns() : 0;
        if (first->kind == HERD_KIND_ALLREDUCE)
            rc = be->allreduce(be, buf, buf, n / esize, first->dtype, first->op);
        else
            rc = be->broadcast(be, buf, n / esize, first->dtype, first->root);
        int64_t t2 = timed ? herd__clock_ns() : 0;
        if (rc == HERD_OK && unpack)
            herd__fusion_unpack_range(buf, c->dsts, c->sizes, g->count, &out, n, be->copy, be);
        if (timed) {
            c->phase_ns[0] += t1 - t0;
            c->phase_ns[1] += t2 - t1;
            c->phase_ns[2] += herd__clock_ns() - t2;
        }
    }
    return rc;
}

/* The group's PACK, collective and UNPACK on every member's row; pieces interleave the three,
 * so each is drawn as one span of its summed time. */
static void trace_group(herd_coordinator_t *c, const herd_fusion_group_t *g, int64_t start)
{
    herd_timeline_t *tl = c->d.timeline;
    herd_request_t *first = request_of(c, c->item_op[c->order[g->first]]);
    int coll = first->kind == HERD_KIND_ALLREDUCE ? HERD_TL_ALLREDUCE : HERD_TL_BROADCAST;
    int64_t end = herd__clock_ns();
    for (int64_t i = 0; i < g->count; i++) {
        herd_request_t *r = request_of(c, c->item_op[c->order[g->first + i]]);
        herd_tensor_t *t = r->tensor;
        herd__timeline_event(tl, HERD_TL_NEGOTIATE, t->key, t->name, r->intake_ns, start, 0, 0);
        herd__timeline_event(tl, HERD_TL_MARK, t->key, t->name, start, start, -1, 0);
        if (!g->fused) {
            herd__timeline_event(tl, coll, t->key, t->name, start, end, g->count, g->bytes);
            continue;
        }
        int64_t a = start + c->phase_ns[0], b = a + c->phase_ns[1];
        herd__timeline_event(tl, HERD_TL_PACK, t->key, t->name, start, a, g->count, g->bytes);
        herd__timeline_event(tl, coll, t->key, t->name, a, b, g->count, g->bytes);
        herd__timeline_event(tl, HERD_TL_UNPACK, t->key, t->name, b, b + c->phase_ns[2],
                             g->count, g->bytes);
    }
}

static void run_group(herd_coordinator_t *c, const herd_fusion_group_t *g)
{
    int64_t start = c->d.timeline != NULL ? herd__clock_ns() : 0;
    c->phase_ns[0] = c->phase_ns[1] = c->phase_ns[2] = 0;
    for (int64_t i = 0; i < g->count; i++)
        c->group_ops[i] = c->item_op[c->order[g->first + i]];
    int status = HERD_OK;
    herd_backend_t *be = backend_for(c, request_of(c, c->group_ops[0]), &status);
    if (be != NULL && be->before_group != NULL)
        status = be->before_group(be, c->group_ops, g->count, g->bytes, g->fused, status);
    if (status == HERD_OK)
        status = run_collective(c, be, g);
    if (status == HERD_OK && be->after_group != NULL)
        status = be->after_group(be, c->group_ops, g->count);
    if (status == HERD_OK && be->poll_op != NULL) {
        /* Issued on the device: the ops complete when it is done (poll_device_ops). */
        if (c->d.timeline != NULL)
            trace_group(c, g, start);
        for (int64_t i = 0; i < g->count; i++)
            on_device(c, c->group_ops[i]);
        return;
    }
    if (be != NULL) {
        /* Even after a failure: the device may still use the caller's buffers until the queued
         * work drains, and the handles must not complete before that. */
        int finished = be->finish(be);
        if (status == HERD_OK)
            status = finished;
    }
    if (c->d.timeline != NULL)
        trace_group(c, g, start);
    char message[HERD_ERRMSG_MAX];
    message[0] = '\0';
    if (status != HERD_OK) {
        herd_request_t *first = request_of(c, c->item_op[c->order[g->first]]);
        snprintf(message, sizeof message, "tensor '%s' (in a group of %lld tensors, %lld bytes): "
                 "%s", first->tensor->name, (long long)g->count, (long long)g->bytes,
                 herd__status_last());
        HERD_LOG_ERR("%s", message);
    }
    for (int64_t i = 0; i < g->count; i++)
        finish_op(c, c->item_op[c->order[g->first + i]], status, message);
    herd__handles_notify(c->d.handles);
}

/* Host tensors travel in buckets of HERD_CHUNK_BYTES when it is set below the fusion threshold:
 * small ones packed a bucket at a time while it is in cache, big ones reduced where they lie in
 * pieces of that size (see run_collective). GPU tensors fuse up to the fusion threshold. */
static int64_t group_limit(const herd_config_t *cfg, int gpu)
{
    if (!gpu && cfg->chunk_bytes > 0 && cfg->chunk_bytes < cfg->fusion_threshold)
        return cfg->chunk_bytes;
    return cfg->fusion_threshold;
}

/* Lists the ready ops of one device class, in priority order, from items[first]. */
static int64_t collect_ready(herd_coordinator_t *c, int gpu, int64_t first)
{
    herd_negotiator_t *n = &c->neg;
    int64_t count = first;
    for (int64_t i = 0; i < n->nready; i++) {
        herd_tensor_t *t = n->slots[n->ready[i]].local;
        if (t == NULL || t->pending == HERD_NO_INDEX) {
            /* Every rank said it has this op ready; this rank not having it is a bug. */
            if (!gpu)
                HERD_LOG_ERR("internal: slot %lld is ready everywhere but has no local op",
                             (long long)n->ready[i]);
            continue;
        }
        herd_request_t *r = request_of(c, t->pending);
        if ((r->device >= 0) != gpu)
            continue;
        c->items[count] = (herd_fusion_item_t){
            .kind = r->kind, .dtype = r->dtype, .op = r->op, .root = r->root,
            .device_class = gpu, .bytes = r->count * (int64_t)herd__dtype_size(r->dtype)};
        c->item_op[count] = t->pending;
        count++;
    }
    return count;
}

static void execute_ready(herd_coordinator_t *c)
{
    /* Host groups first, then GPU groups: the same split and plan on every rank. */
    int64_t nhost = collect_ready(c, 0, 0);
    int64_t nall = collect_ready(c, 1, nhost);
    int64_t nhost_groups = 0, ngpu_groups = 0;
    herd__fusion_plan(c->items, nhost, group_limit(c->d.config, 0), &c->scratch, c->order,
                      c->groups, &nhost_groups);
    herd__fusion_plan(c->items + nhost, nall - nhost, group_limit(c->d.config, 1), &c->scratch,
                      c->order + nhost, c->groups + nhost_groups, &ngpu_groups);
    for (int64_t i = nhost; i < nall; i++)
        c->order[i] += nhost;
    for (int64_t g = nhost_groups; g < nhost_groups + ngpu_groups; g++)
        c->groups[g].first += nhost;
    for (int64_t g = 0; g < nhost_groups + ngpu_groups; g++)
        run_group(c, &c->groups[g]);
}

/* ---- round results ---------------------------------------------------------------------- */

static herd_tensor_t *local_tensor(herd_coordinator_t *c, const herd_neg_event_t *ev)
{
    herd_tensor_t *t = herd__registry_find(c->d.registry, ev->name, ev->name_len);
    /* Every rank asked for a new slot's name; a stalled name may be unknown to the ranks that
     * never submitted it. */
    if (t == NULL && ev->type == HERD_EVENT_NEW_SLOT)
        HERD_LOG_ERR("internal: round names tensor '%.*s' unknown on this rank",
                     (int)ev->name_len, ev->name);
    return t;
}

static void apply_events(herd_coordinator_t *c)
{
    herd_negotiator_t *n = &c->neg;
    for (int64_t i = 0; i < n->nevents; i++) {
        const herd_neg_event_t *ev = &n->events[i];
        if (ev->type == HERD_EVENT_STALLED) {
            HERD_LOG_WRN("stall: %s", ev->message);
            continue;
        }
        if (ev->type == HERD_EVENT_EXPIRED ||
            (ev->type == HERD_EVENT_ERROR && ev->status == HERD_ERR_TIMEOUT))
            HERD_LOG_ERR("stall: %s", ev->message);
        herd_tensor_t *t = local_tensor(c, ev);
        if (t == NULL)
            continue;
        switch (ev->type) {
        case HERD_EVENT_NEW_SLOT:
            t->slot = ev->slot;
            n->slots[ev->slot].local = t;
            break;
        case HERD_EVENT_EVICTED:
            if (t->slot != ev->slot)
                break;
            if (t->pending != HERD_NO_INDEX && t->announced_by_bit) {
                clear_bit(c->ready_bits, t->slot);
                c->reannounce[c->nreannounce++] = t;
            }
            t->slot = -1;
            break;
        case HERD_EVENT_EXPIRED:
            if (t->slot == ev->slot && t->pending != HERD_NO_INDEX && t->announced_by_bit)
                finish_op(c, t->pending, HERD_ERR_TIMEOUT, ev->message);
            break;
        default: /* HERD_EVENT_ERROR */
            if (t->pending != HERD_NO_INDEX && !t->announced_by_bit && !c->on_device[t->pending])
                finish_op(c, t->pending, ev->status, ev->message);
            break;
        }
    }
}

/* Fails every op this rank still has in flight (shutdown, or a broken control plane). */
static void fail_all(herd_coordinator_t *c, int status, const char *why)
{
    herd_handle_table_t *h = c->d.handles;
    char message[HERD_ERRMSG_MAX];
    for (uint32_t i = 0; i < h->capacity; i++) {
        /* Only ops this thread took from the queue: a slot a submitter is still filling is
         * not ours to read. */
        if (!h->slots[i].coordinator_owned)
            continue;
        herd_request_t *r = request_of(c, i);
        snprintf(message, sizeof message, "tensor '%s': %s", r->tensor->name, why);
        finish_op(c, i, status, message);
    }
    herd__handles_notify(h);
}

static int grow_for_slots(herd_coordinator_t *c)
{
    int64_t words = herd__negotiate_words(&c->neg);
    int rc = ensure((void **)&c->ready_bits, &c->ready_words_cap, words, sizeof(uint64_t));
    if (rc == HERD_OK)
        rc = ensure((void **)&c->round_words, &c->round_words_cap, HEADER_WORDS + words,
                    sizeof(uint64_t));
    return rc;
}

/* The control plane failed mid-round: ranks may now disagree on what happened, so herd stops
 * issuing collectives; every op in flight and every later one fails with the cause. */
static void break_down(herd_coordinator_t *c)
{
    drain_device_ops(c);
    c->broken = 1;
    snprintf(c->broken_why, sizeof c->broken_why,
             "herd's control plane failed and herd stopped communicating: %s",
             herd__status_last());
    HERD_LOG_ERR("%s", c->broken_why);
    fail_all(c, HERD_ERR_BACKEND, c->broken_why);
}

/* ---- stall inspector --------------------------------------------------------------------
 * A rank with ops in flight asks for a check every stall interval; every rank then gathers all
 * ready vectors and rank 0's clock, and the replicated negotiator decides, identically on every
 * rank, which tensors are stalled (warn) or timed out (fail where submitted). */

static int stall_check_due(herd_coordinator_t *c)
{
    return c->stall_interval_ns > 0 && c->npending > 0 &&
           herd__clock_ns() - c->last_stall_check_ns >= c->stall_interval_ns;
}

static int run_stall_check(herd_coordinator_t *c)
{
    c->last_stall_check_ns = herd__clock_ns();
    int64_t words = herd__negotiate_words(&c->neg);
    int rc = ensure((void **)&c->stall_out, &c->stall_out_cap, 1 + words, sizeof(uint64_t));
    if (rc != HERD_OK)
        return rc;
    c->stall_out[0] = (uint64_t)(c->last_stall_check_ns / 1000000);
    if (words > 0)
        memcpy(c->stall_out + 1, c->ready_bits, (size_t)words * sizeof(uint64_t));
    const char *const *blobs = NULL;
    const size_t *lens = NULL;
    rc = herd__ctrl_allgather(c->d.ctrl, (const char *)c->stall_out,
                              (size_t)(1 + words) * sizeof(uint64_t), &blobs, &lens);
    if (rc != HERD_OK)
        return rc;
    for (int r = 0; r < c->size; r++)
        c->rank_bits[r] = (const uint64_t *)(const void *)blobs[r] + 1;
    int64_t now0;
    memcpy(&now0, blobs[0], sizeof now0);
    const herd_config_t *cfg = c->d.config;
    rc = herd__negotiate_stall_scan(&c->neg, c->rank_bits, words, now0, cfg->stall_warning_ms,
                                    cfg->stall_timeout_ms);
    if (rc != HERD_OK)
        return herd__status_set(rc, "stall inspector out of memory");
    apply_events(c);
    herd__handles_notify(c->d.handles);
    return HERD_OK;
}

/* One negotiation round (see DESIGN). Returns 1 when every rank has asked to shut down. */
static int run_round(herd_coordinator_t *c)
{
    intake_all(c);
    if (c->broken)
        return c->shutdown_asked;
    int64_t words = herd__negotiate_words(&c->neg);
    uint64_t *w = c->round_words;
    int want_check = stall_check_due(c);
    w[0] = ~(uint64_t)((c->outbox_len > 0 ? OR_NAMES : 0) | (want_check ? OR_STALL_CHECK : 0));
    w[1] = c->shutdown_asked ? AND_SHUTDOWN : 0;
    if (words > 0) /* ready_bits is NULL until the first slot exists */
        memcpy(w + HEADER_WORDS, c->ready_bits, (size_t)words * sizeof *w);
    int rc = herd__ctrl_allreduce_band(c->d.ctrl, w, HEADER_WORDS + words);
    const char *const *blobs = NULL;
    const size_t *lens = NULL;
    if (rc == HERD_OK && (~w[0] & OR_NAMES))
        rc = herd__ctrl_allgather(c->d.ctrl, c->outbox, c->outbox_len, &blobs, &lens);
    c->outbox_len = 0;
    int all_shutdown = (w[1] & AND_SHUTDOWN) != 0;
    int stall_check = (~w[0] & OR_STALL_CHECK) != 0;
    if (rc == HERD_OK)
        rc = herd__negotiate_round(&c->neg, w + HEADER_WORDS, words, blobs, lens);
    if (rc == HERD_OK)
        rc = grow_for_slots(c); /* may move round_words: w is not used past here */
    if (rc != HERD_OK) {
        break_down(c);
        return c->shutdown_asked;
    }
    c->epoch++;
    apply_events(c);
    execute_ready(c);
    herd__handles_notify(c->d.handles);
    if (stall_check && run_stall_check(c) != HERD_OK)
        break_down(c);
    return all_shutdown;
}

/* ---- driving progress --------------------------------------------------------------------
 * Rounds run under c->progress, on the coordinator thread or on an application thread that
 * waits forever on a handle and finds nobody else driving (herd__coordinator_drive): then the
 * waiter itself runs the rounds its operation needs, and neither the hand-off to the coordinator
 * nor the wake back costs a thread wake (30-50 us each on this class of machine). */

static int has_local_news(herd_coordinator_t *c)
{
    return herd__queue_ready(c->d.queue) || c->nreannounce > 0 ||
           (atomic_load(&c->stop) && !c->shutdown_asked) || stall_check_due(c);
}

enum { DRIVE_IDLE = 0, DRIVE_TARGET_DONE = 1, DRIVE_SHUTDOWN = 2 };

/* Runs rounds while this rank has news or another rank asks for one, polling for such asks for
 * `spin_ns` after the last round. Stops early once `done(arg)` holds. Caller holds progress. */
static int drive(herd_coordinator_t *c, int64_t spin_ns, int (*done)(void *), void *arg)
{
    int64_t spin_until = herd__clock_ns() + spin_ns;
    for (;;) {
        poll_device_ops(c);
        if (done != NULL && done(arg))
            return DRIVE_TARGET_DONE;
        if (c->broken) {
            if (has_local_news(c) && run_round(c))
                return DRIVE_SHUTDOWN;
            return DRIVE_IDLE;
        }
        int round = 0;
        if (has_local_news(c)) {
            if (herd__ctrl_wake_others(c->d.ctrl, c->epoch) != HERD_OK) {
                break_down(c);
                continue;
            }
            round = 1;
        } else {
            int woken = herd__ctrl_wake_poll(c->d.ctrl, c->epoch);
            if (woken < 0) {
                break_down(c);
                continue;
            }
            round = woken;
        }
        if (round) {
            if (run_round(c))
                return DRIVE_SHUTDOWN;
            spin_until = herd__clock_ns() + spin_ns;
            continue;
        }
        if (herd__clock_ns() >= spin_until)
            return DRIVE_IDLE;
    }
}

static void *coordinator_main(void *arg)
{
    herd_coordinator_t *c = arg;
    int64_t sleep_ns = FIRST_SLEEP_NS;
    const int64_t max_sleep_ns = c->d.config->idle_poll_us * 1000;
    for (;;) {
        int waiting_on_peers = 0, on_gpu = 0;
        if (!atomic_load(&c->d.queue->driving)) {
            herd__mutex_lock(&c->progress);
            int64_t epoch = c->epoch;
            int r = drive(c, c->spin_ns, NULL, NULL);
            int ran = c->epoch != epoch;
            waiting_on_peers = c->npending > 0;
            on_gpu = c->ndevice_ops > 0;
            herd__mutex_unlock(&c->progress);
            if (r == DRIVE_SHUTDOWN)
                break;
            if (ran)
                sleep_ns = FIRST_SLEEP_NS;
        }
        /* Idle, or an application thread is driving: sleep. Requests wake this thread unless a
         * driver will take them (see herd__queue_push for the ones that do not). */
        int driving = atomic_load(&c->d.queue->driving);
        /* With ops in flight a peer's wake is expected soon: look four times as often. */
        int64_t cap = waiting_on_peers ? max_sleep_ns / 4 : max_sleep_ns;
        if (on_gpu && cap > GPU_POLL_NS) /* nothing wakes this thread when the device is done */
            cap = GPU_POLL_NS;
        if (sleep_ns > cap)
            sleep_ns = cap;
        int64_t deadline = herd__clock_ns() + sleep_ns;
        if (herd__queue_sleep(c->d.queue, deadline, !driving))
            sleep_ns = FIRST_SLEEP_NS;
        else
            sleep_ns = sleep_ns * 2 < cap ? sleep_ns * 2 : cap;
    }
    /* Every rank asked to shut down in the same round: what every rank had ready ran in it;
     * what is left was never submitted by every rank. */
    herd__mutex_lock(&c->progress);
    drain_device_ops(c);
    intake_all(c);
    fail_all(c, HERD_ERR_SHUTDOWN,
             "herd shut down before every rank submitted this operation");
    if (!c->broken && herd__ctrl_quiesce(c->d.ctrl) != HERD_OK)
        HERD_LOG_WRN("shutdown: %s", herd__status_last());
    herd__mutex_unlock(&c->progress);
    return NULL;
}

typedef struct handle_target {
    herd_handle_table_t *handles;
    herd_handle_t handle;
} handle_target_t;

static int handle_done(void *arg)
{
    handle_target_t *t = arg;
    return herd__handles_poll(t->handles, t->handle) != HERD_INPROGRESS;
}

int herd__coordinator_drive(herd_coordinator_t *c, herd_handle_t handle)
{
    herd_request_queue_t *q = c->d.queue;
    if (atomic_load(&q->driving) || pthread_mutex_trylock(&c->progress) != 0)
        return 0;
    atomic_store(&q->driving, 1);
    handle_target_t target = {.handles = c->d.handles, .handle = handle};
    int64_t epoch = c->epoch;
    int r = drive(c, c->spin_ns, handle_done, &target);
    int ran = c->epoch != epoch;
    /* Hand back to the coordinator thread. Clear the flag before looking at the queue: a
     * submitter that saw the flag set did not wake anyone, and its request is visible now.
     * If the operation still waits on other ranks, the coordinator thread watches for them. */
    atomic_store(&q->driving, 0);
    int left = herd__queue_ready(q) || c->nreannounce > 0 || r != DRIVE_TARGET_DONE;
    herd__mutex_unlock(&c->progress);
    if (left)
        herd__queue_nudge(q);
    return ran;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

static void free_coordinator(herd_coordinator_t *c)
{
    herd__mutex_destroy(&c->progress);
    herd__negotiate_destroy(&c->neg);
    free(c->ready_bits);
    free(c->round_words);
    free(c->outbox);
    free(c->reannounce);
    free(c->items);
    free(c->item_op);
    free(c->order);
    free(c->groups);
    free(c->scratch.next);
    free(c->srcs);
    free(c->dsts);
    free(c->sizes);
    free(c->rank_bits);
    free(c->group_ops);
    free(c->device_ops);
    free(c->on_device);
    if (c->gpu_backend != NULL)
        c->gpu_backend->destroy(c->gpu_backend);
    free(c->stall_out);
    free(c);
}

/* The timeline's ready marks: rank `rank` asked for `name` by name. */
static void observe_request(void *ctx, int rank, const char *name, size_t name_len)
{
    herd_coordinator_t *c = ctx;
    herd_tensor_t *t = herd__registry_find(c->d.registry, name, name_len);
    if (t != NULL && t->pending != HERD_NO_INDEX)
        herd__timeline_event(c->d.timeline, HERD_TL_MARK, t->key, t->name, herd__clock_ns(),
                             herd__clock_ns(), rank, 0);
}

/* Checks often enough that a warning or timeout comes at most a quarter late. */
static int64_t stall_interval_ns(const herd_config_t *cfg)
{
    int64_t shortest = cfg->stall_warning_ms;
    if (cfg->stall_timeout_ms > 0 && (shortest == 0 || cfg->stall_timeout_ms < shortest))
        shortest = cfg->stall_timeout_ms;
    if (shortest == 0)
        return 0;
    int64_t ms = shortest / 4;
    ms = ms < 100 ? 100 : ms > 10000 ? 10000 : ms;
    return ms * 1000000;
}

int herd__coordinator_start(herd_coordinator_t **out, const herd_coordinator_deps_t *deps)
{
    herd_coordinator_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the coordinator");
    c->d = *deps;
    c->rank = herd__ctrl_rank(deps->ctrl);
    c->size = herd__ctrl_size(deps->ctrl);
    herd__mutex_init(&c->progress);
    atomic_init(&c->stop, 0);
    c->spin_ns = deps->config->spin_us * 1000;
    c->stall_interval_ns = stall_interval_ns(deps->config);
    c->last_stall_check_ns = herd__clock_ns();
    herd__negotiate_init(&c->neg, c->size);
    if (deps->timeline != NULL) {
        c->neg.observe = observe_request;
        c->neg.observe_ctx = c;
    }
    size_t n = deps->handles->capacity;
    c->capacity = (int64_t)n;
    c->reannounce = calloc(n, sizeof *c->reannounce);
    c->items = calloc(n, sizeof *c->items);
    c->item_op = calloc(n, sizeof *c->item_op);
    c->order = calloc(n, sizeof *c->order);
    c->groups = calloc(n, sizeof *c->groups);
    c->scratch.next = calloc(n, sizeof *c->scratch.next);
    c->srcs = calloc(n, sizeof *c->srcs);
    c->dsts = calloc(n, sizeof *c->dsts);
    c->sizes = calloc(n, sizeof *c->sizes);
    c->group_ops = calloc(n, sizeof *c->group_ops);
    c->device_ops = calloc(n, sizeof *c->device_ops);
    c->on_device = calloc(n, sizeof *c->on_device);
    c->gpu_device = -1;
    c->rank_bits = calloc((size_t)c->size, sizeof *c->rank_bits);
    int rc = HERD_OK;
    if (!c->reannounce || !c->items || !c->item_op || !c->order || !c->groups ||
        !c->scratch.next || !c->srcs || !c->dsts || !c->sizes || !c->rank_bits ||
        !c->group_ops || !c->device_ops || !c->on_device)
        rc = herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate coordinator tables");
    if (rc == HERD_OK)
        rc = ensure((void **)&c->round_words, &c->round_words_cap, HEADER_WORDS,
                    sizeof(uint64_t));
    if (rc == HERD_OK && herd__thread_start(&c->thread, "herd-coord", coordinator_main, c) != 0)
        rc = herd__status_set(HERD_ERR_INTERNAL, "cannot start the coordinator thread");
    if (rc != HERD_OK) {
        free_coordinator(c);
        return rc;
    }
    *out = c;
    return HERD_OK;
}

int herd__coordinator_join(herd_coordinator_t *c, int64_t timeout_ns, int64_t configured_ms)
{
    atomic_store(&c->stop, 1);
    herd__queue_nudge(c->d.queue);
    if (herd__thread_join_within(c->thread, timeout_ns)) {
        pthread_detach(c->thread);
        return herd__status_set(HERD_ERR_TIMEOUT,
                                "herd_shutdown: the last rounds did not finish within %.1f s "
                                "(HERD_SHUTDOWN_TIMEOUT_SECONDS): a rank may have stopped "
                                "answering or not called herd_shutdown; herd is stopped "
                                "without finalizing MPI",
                                (double)configured_ms / 1e3);
    }
    int rc = c->broken ? HERD_ERR_BACKEND : HERD_OK;
    if (c->broken)
        herd__status_set_msg(rc, c->broken_why);
    free_coordinator(c);
    return rc;
}
