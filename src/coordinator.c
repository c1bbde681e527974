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

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "backend/gpu.h"
#include "counters.h"
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
/* word 1: everyone asked to shut down; every rank's round runs on a thread that drives its own
 * wait (the next round is then a blocking collective: see run_round) */
enum { AND_SHUTDOWN = 1, AND_CALLER = 2 };
enum { HEADER_WORDS = 2 };
enum { FIRST_SLEEP_NS = 20000 };
enum { GPU_POLL_NS = 200000 }; /* longest sleep while GPU ops run on the device */

struct herd_coordinator {
    herd_coordinator_deps_t d;
    pthread_t thread;
    /* Everything below except `stop` is guarded by progress: held by whoever runs rounds. */
    pthread_mutex_t progress;
    atomic_int stop;  /* herd_shutdown was called on this rank */
    int64_t spin_ns;      /* HERD_SPIN_US, for the coordinator thread */
    int64_t wait_spin_ns; /* HERD_WAIT_SPIN_US, for a thread driving its own wait */
    int on_caller;        /* the rounds now run on a thread driving its own wait */
    int caller_drove;     /* an application thread ran rounds since the coordinator last looked */
    int blocking_round;   /* the next round's negotiation is MPI's blocking allreduce */
    int64_t completed;    /* ops finished so far (phantoms aside) */
    int rank, size;
    herd_negotiator_t neg;
    int64_t epoch;           /* rounds run so far: the same on every rank */
    int last_joined;         /* the last rank to join, from the last completed join */
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
    double *pre, *post;          /* the running group's scale factors */
    int group_in_place;          /* the running fused group was reduced where it lies */
    int group_scaled;            /* GPU: some rank scales a member of the running group */
    int64_t *counts, *displs;    /* 2 * size each: counts exchanged by variable-size kinds */
    /* Join: this rank has joined (its join op is in flight) and takes part in every op the
     * others run through phantoms, stand-in requests built from the slot's attributes. */
    int joined;
    uint32_t join_op; /* the handle index of this rank's join, while joined */
    herd_request_t *phantoms; /* one per possible ready slot of a round */
    int64_t *phantom_slot;
    uint32_t nphantoms;
    void *scratch_mem[2]; /* phantoms' input (identity) and output */
    size_t scratch_cap[2];
    /* GPU ops issued and not yet complete on the device, in issue order (gpu_backend->poll_op).
     * Their names stay in flight; their ready bits are already cleared. */
    uint32_t *device_ops;
    int64_t ndevice_ops;
    unsigned char *on_device; /* per handle index: in device_ops */
};

/* Marks an item_op / group_ops entry that names a phantom, not a handle slot. */
#define PHANTOM_BIT UINT32_C(0x80000000)

/* ---- small helpers ---------------------------------------------------------------------- */

static herd_request_t *request_of(herd_coordinator_t *c, uint32_t index)
{
    if (index & PHANTOM_BIT)
        return &c->phantoms[index & ~PHANTOM_BIT];
    return herd__handles_request(c->d.handles, index);
}

static herd_attrs_t attrs_of(const herd_request_t *r)
{
    return (herd_attrs_t){.count = r->count, .row = r->row, .kind = r->kind, .dtype = r->dtype,
                          .op = r->op, .root = r->root, .device = r->device};
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
    if (index & PHANTOM_BIT)
        return; /* a joined rank's stand-in: nobody waits on it */
    herd_request_t *r = request_of(c, index);
    herd_tensor_t *t = r->tensor;
    if (t->announced_by_bit && t->slot >= 0)
        clear_bit(c->ready_bits, t->slot);
    t->pending = HERD_NO_INDEX;
    t->announced_by_bit = 0;
    c->d.handles->slots[index].coordinator_owned = 0;
    c->npending--;
    atomic_store(&t->inflight, 0);
    if (r->kind == HERD_KIND_JOIN) {
        if (status == HERD_OK)
            *r->last_rank_out = c->last_joined;
        c->joined = 0;
        atomic_store(&c->d.queue->joined, 0);
    }
    c->completed++;
    herd__count(HERD_CTR_OPS);
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
    if (r->kind == HERD_KIND_JOIN) {
        /* From this round on, this rank takes part in whatever the others run. */
        c->joined = 1;
        c->join_op = index;
    }
    if (t->slot >= 0 && herd__kind(r->kind)->cached) {
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
static herd_backend_t *backend_for(herd_coordinator_t *c, const herd_request_t *first,
                                   const char *name, int *rc)
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
                               name, first->device, c->gpu_device);
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

/* ---- operations of a group -------------------------------------------------------------
 * Every rank runs the same groups in the same order; inside a group, every kind below issues
 * the same backend calls on every rank, decided only from data every rank holds alike (the
 * plan, the slot attributes, the joined set, exchanged counts). A rank that has joined runs
 * the group with stand-ins ("phantoms"): the op's identity as input, a scratch buffer as
 * output. */

/* A host scratch buffer of at least `bytes`, grown (never shrunk) off the steady-state path:
 * only a joined rank or a variable-size phantom uses one. */
static void *scratch_of(herd_coordinator_t *c, int which, size_t bytes)
{
    if (bytes == 0)
        bytes = 64;
    if (bytes > c->scratch_cap[which]) {
        size_t cap = (bytes + 63) & ~(size_t)63;
        void *p = NULL;
        if (posix_memalign(&p, 64, cap) != 0) {
            herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate %zu bytes of scratch", cap);
            return NULL;
        }
        free(c->scratch_mem[which]);
        c->scratch_mem[which] = p;
        c->scratch_cap[which] = cap;
    }
    return c->scratch_mem[which];
}

enum { SCRATCH_IN = 0, SCRATCH_OUT = 1 };

/* The name a group's messages use: the tensor's, or the slot's for a phantom. */
static const char *op_name(herd_coordinator_t *c, uint32_t index)
{
    if (index & PHANTOM_BIT)
        return c->neg.slots[c->phantom_slot[index & ~PHANTOM_BIT]].name;
    return request_of(c, index)->tensor->name;
}

static int is_phantom(uint32_t index)
{
    return (index & PHANTOM_BIT) != 0;
}

/* Points the group's phantoms at scratch: the op's identity as input (in_elems(r) elements of
 * it), a buffer of out_elems(r) elements to write into. Sized for the largest first, so that
 * growing the scratch cannot move a buffer already handed out. */
static int setup_phantoms(herd_coordinator_t *c, const herd_fusion_group_t *g,
                          int64_t (*in_elems)(const herd_coordinator_t *, const herd_request_t *),
                          int64_t (*out_elems)(const herd_coordinator_t *,
                                               const herd_request_t *))
{
    size_t in_max = 0, out_max = 0;
    herd_request_t *proto = NULL;
    for (int64_t i = 0; i < g->count; i++) {
        if (!is_phantom(c->group_ops[i]))
            continue;
        herd_request_t *r = request_of(c, c->group_ops[i]);
        size_t esize = herd__dtype_size(r->dtype);
        size_t in = (size_t)in_elems(c, r) * esize, out = (size_t)out_elems(c, r) * esize;
        in_max = in > in_max ? in : in_max;
        out_max = out > out_max ? out : out_max;
        proto = r;
    }
    if (proto == NULL)
        return HERD_OK;
    void *in = scratch_of(c, SCRATCH_IN, in_max);
    void *out = scratch_of(c, SCRATCH_OUT, out_max);
    if (in == NULL || out == NULL)
        return HERD_ERR_NO_MEMORY;
    /* A group shares dtype and op: one identity serves every member. Non-reducing kinds carry
     * SUM, whose identity is the zeros a joined rank contributes. */
    herd__dtype_fill_identity(proto->dtype, proto->op, in, in_max / herd__dtype_size(proto->dtype));
    for (int64_t i = 0; i < g->count; i++) {
        if (!is_phantom(c->group_ops[i]))
            continue;
        herd_request_t *r = request_of(c, c->group_ops[i]);
        r->sendbuf = in;
        r->recvbuf = out;
    }
    return HERD_OK;
}

static int64_t elems_count(const herd_coordinator_t *c, const herd_request_t *r)
{
    (void)c;
    return r->count;
}

static int64_t elems_gathered(const herd_coordinator_t *c, const herd_request_t *r)
{
    return r->count * c->size;
}

static int64_t elems_my_share(const herd_coordinator_t *c, const herd_request_t *r)
{
    return herd__rs_rows(r->count / r->row, c->size, c->rank) * r->row;
}

/* The divisor AVERAGE needs: the ranks that contributed data (those that have not joined). */
static int contributors(const herd_coordinator_t *c)
{
    return c->size - c->neg.njoined;
}

static int missing_entry(const herd_backend_t *be, const char *kind)
{
    return herd__status_set(HERD_ERR_NOT_SUPPORTED, "the %s data plane has no %s", be->name,
                            kind);
}

/* What a GPU group of one tensor of the other kinds needs before it is issued (before_group):
 * staging room for input and output, and device scratch (the fusion buffer) for a
 * reduce-scatter whose parts differ, which NCCL reduces whole. Allreduce and broadcast keep the
 * group's bytes and fused flag. */
static void device_needs(const herd_coordinator_t *c, const herd_request_t *r, int64_t *bytes,
                         int *scratch)
{
    int64_t esize = (int64_t)herd__dtype_size(r->dtype);
    switch (r->kind) {
    case HERD_KIND_ALLGATHER:
        *bytes = r->count * esize * (c->size + 1);
        *scratch = 0;
        break;
    case HERD_KIND_REDUCESCATTER: {
        int64_t rows = r->count / r->row;
        *bytes = (r->count + herd__rs_rows(rows, c->size, c->rank) * r->row) * esize;
        *scratch = rows % c->size != 0;
        break;
    }
    case HERD_KIND_ALLTOALL:
        *bytes = 2 * r->count * esize;
        *scratch = 0;
        break;
    default:
        break;
    }
}

/* 1 when the running group's members lie back to back in group order, on both sides (for a
 * broadcast the two sides are one), with one scaling for all. */
static int members_adjacent(const herd_coordinator_t *c, int64_t n)
{
    for (int64_t i = 1; i < n; i++) {
        if ((const char *)c->srcs[i - 1] + c->sizes[i - 1] != (const char *)c->srcs[i] ||
            (char *)c->dsts[i - 1] + c->sizes[i - 1] != (char *)c->dsts[i] ||
            c->pre[i] != c->pre[0] || c->post[i] != c->post[0])
            return 0;
    }
    return 1;
}

/* Allreduce and broadcast: one tensor where it lies, or a fused group in pieces of
 * HERD_CHUNK_BYTES, each packed (prescaled), reduced (divided) and unpacked (postscaled) while
 * it is in cache. */
static int run_allreduce(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g)
{
    const uint32_t *ops = c->group_ops;
    herd_request_t *first = request_of(c, ops[0]);
    int is_bcast = first->kind == HERD_KIND_BROADCAST;
    int op = first->op == HERD_AVERAGE ? HERD_SUM : first->op;
    int divisor = first->op == HERD_AVERAGE ? contributors(c) : 1;
    int plain_average = first->op == HERD_AVERAGE && divisor == c->size;
    size_t esize = herd__dtype_size(first->dtype);
    int scaled = 0;
    int rc = setup_phantoms(c, g, elems_count, elems_count);
    if (rc != HERD_OK)
        return rc;
    for (int64_t i = 0; i < g->count; i++) {
        herd_request_t *r = request_of(c, ops[i]);
        if (is_phantom(ops[i]) && is_bcast)
            r->sendbuf = r->recvbuf; /* a receiver: one buffer */
        scaled |= r->prescale != 1.0 || r->postscale != 1.0;
    }
    int host = be == c->d.cpu_backend;
    /* On a GPU the choice must be the same on every rank (NCCL's ops must match): whether any
     * rank scales a member, as before_group agreed. */
    if (!host)
        scaled = c->group_scaled;
    /* The plain entry points unless scaling or a join's divisor asks for more. */
    int plain = !scaled && (first->op != HERD_AVERAGE || plain_average);
    if (!is_bcast && !plain && be->allreduce_scaled == NULL)
        return missing_entry(be, "scaled allreduce");
    if (g->bytes == 0)
        return HERD_OK;
    if (!host && !is_bcast && scaled && g->fused) {
        /* No kernel to scale members in the device buffer: each member alone, with its own
         * factors folded into NCCL's PreMulSum. */
        for (int64_t i = 0; i < g->count && rc == HERD_OK; i++) {
            herd_request_t *r = request_of(c, ops[i]);
            herd_scale_t s = {.pre = r->prescale, .post = r->postscale, .divisor = divisor};
            rc = be->allreduce_scaled(be, r->sendbuf, r->recvbuf, r->count, r->dtype, op, &s);
        }
        return rc;
    }
    if (!g->fused) {
        if (is_bcast)
            return be->broadcast(be, first->recvbuf, first->count, first->dtype, first->root);
        if (plain)
            return be->allreduce(be, first->sendbuf, first->recvbuf, first->count, first->dtype,
                                 first->op);
        herd_scale_t s = {.pre = first->prescale, .post = first->postscale, .divisor = divisor};
        return be->allreduce_scaled(be, first->sendbuf, first->recvbuf, first->count,
                                    first->dtype, op, &s);
    }
    for (int64_t i = 0; i < g->count; i++) {
        herd_request_t *r = request_of(c, ops[i]);
        c->srcs[i] = r->sendbuf;
        c->dsts[i] = r->recvbuf;
        c->sizes[i] = r->count * (int64_t)esize;
        c->pre[i] = r->prescale;
        c->post[i] = r->postscale;
    }
    /* Members laid out back to back in group order (views of one flat buffer, as DDP's
     * gradient_as_bucket_view and herd.torch arrange) are reduced where they lie: no pack, no
     * unpack. Out of place, both sides must be contiguous. */
    if (host && members_adjacent(c, g->count)) {
        c->group_in_place = 1;
        int64_t total = g->bytes / (int64_t)esize;
        if (is_bcast)
            return be->broadcast(be, c->dsts[0], total, first->dtype, first->root);
        if (plain)
            return be->allreduce(be, c->srcs[0], c->dsts[0], total, first->dtype, first->op);
        herd_scale_t s = {.pre = c->pre[0], .post = c->post[0], .divisor = divisor};
        return be->allreduce_scaled(be, c->srcs[0], c->dsts[0], total, first->dtype, op, &s);
    }
    /* The group travels in pieces of HERD_CHUNK_BYTES: each piece is packed, reduced and
     * unpacked while it is still in cache, so the fusion buffer stays small and a big group does
     * not stream through main memory three times. */
    int64_t chunk = host ? c->d.config->chunk_bytes : 0; /* GPU: whole */
    int64_t piece = chunk > 0 ? chunk : g->bytes;
    piece = piece < g->bytes ? piece - piece % (int64_t)esize : g->bytes;
    if (piece < (int64_t)esize)
        piece = (int64_t)esize;
    void *buf = NULL;
    rc = be->fusion_buffer(be, (size_t)piece, &buf);
    if (rc != HERD_OK)
        return rc;
    int is_root = is_bcast && c->rank == first->root;
    int pack = !is_bcast || is_root;
    int unpack = !is_bcast || !is_root;
    herd_fusion_scaling_t pre = {.factors = scaled ? c->pre : NULL, .dtype = first->dtype};
    herd_fusion_scaling_t post = {.factors = scaled ? c->post : NULL, .dtype = first->dtype};
    herd_scale_t whole = {.pre = 1.0, .post = 1.0, .divisor = divisor};
    herd_fusion_cursor_t in = {0, 0}, out = {0, 0};
    int timed = c->d.timeline != NULL;
    for (int64_t done = 0; done < g->bytes && rc == HERD_OK; done += piece) {
        int64_t n = g->bytes - done < piece ? g->bytes - done : piece;
        int64_t t0 = timed ? herd__clock_ns() : 0;
        if (pack && scaled)
            herd__fusion_pack_range_scaled(buf, c->srcs, c->sizes, g->count, &in, n, &pre);
        else if (pack)
            herd__fusion_pack_range(buf, c->srcs, c->sizes, g->count, &in, n, be->copy, be);
        int64_t t1 = timed ? herd__clock_ns() : 0;
        if (is_bcast)
            rc = be->broadcast(be, buf, n / (int64_t)esize, first->dtype, first->root);
        else if (plain)
            rc = be->allreduce(be, buf, buf, n / (int64_t)esize, first->dtype, first->op);
        else
            rc = be->allreduce_scaled(be, buf, buf, n / (int64_t)esize, first->dtype, op,
                                      &whole);
        int64_t t2 = timed ? herd__clock_ns() : 0;
        if (rc == HERD_OK && unpack && scaled)
            herd__fusion_unpack_range_scaled(buf, c->dsts, c->sizes, g->count, &out, n, &post);
        else if (rc == HERD_OK && unpack)
            herd__fusion_unpack_range(buf, c->dsts, c->sizes, g->count, &out, n, be->copy, be);
        if (timed) {
            c->phase_ns[0] += t1 - t0;
            c->phase_ns[1] += t2 - t1;
            c->phase_ns[2] += herd__clock_ns() - t2;
        }
    }
    return rc;
}

/* Allgather of equal parts: one tensor straight from its buffers, or a fused group packed into
 * one part per rank, gathered, and copied out member by member, rank by rank. */
static int run_allgather(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g)
{
    const uint32_t *ops = c->group_ops;
    herd_request_t *first = request_of(c, ops[0]);
    size_t esize = herd__dtype_size(first->dtype);
    if (be->allgather == NULL)
        return missing_entry(be, "allgather");
    int rc = setup_phantoms(c, g, elems_count, elems_gathered); /* a joined rank sends zeros */
    if (rc != HERD_OK)
        return rc;
    if (g->bytes == 0)
        return HERD_OK;
    if (!g->fused)
        return be->allgather(be, first->sendbuf, first->recvbuf, first->count, first->dtype);
    int64_t part = g->bytes; /* this rank's packed part; the same size on every rank */
    void *buf = NULL;
    rc = be->fusion_buffer(be, (size_t)(part * (c->size + 1)), &buf);
    if (rc != HERD_OK)
        return rc;
    char *mine = buf, *all = (char *)buf + part;
    int64_t t0 = herd__clock_ns();
    for (int64_t i = 0, off = 0; i < g->count; i++) {
        herd_request_t *r = request_of(c, ops[i]);
        int64_t b = r->count * (int64_t)esize;
        be->copy(be, mine + off, r->sendbuf, (size_t)b);
        off += b;
    }
    int64_t t1 = herd__clock_ns();
    rc = be->allgather(be, mine, all, part / (int64_t)esize, first->dtype);
    int64_t t2 = herd__clock_ns();
    for (int64_t i = 0, off = 0; i < g->count && rc == HERD_OK; i++) {
        herd_request_t *r = request_of(c, ops[i]);
        int64_t b = r->count * (int64_t)esize;
        for (int rank = 0; rank < c->size; rank++)
            be->copy(be, (char *)r->recvbuf + (size_t)rank * (size_t)b,
                     all + (size_t)rank * (size_t)part + (size_t)off, (size_t)b);
        off += b;
    }
    c->phase_ns[0] += t1 - t0;
    c->phase_ns[1] += t2 - t1;
    c->phase_ns[2] += herd__clock_ns() - t2;
    return rc;
}

/* A buffer for a variable-size result in *out: host memory, or the backend's (device memory on
 * a GPU, which also makes staging room for `send_bytes` of input); scratch for a phantom (whose
 * result is dropped); NULL for 0 bytes. HERD_OK, or HERD_ERR_NO_MEMORY with the message set. */
static int result_buffer(herd_coordinator_t *c, herd_backend_t *be, uint32_t index,
                         size_t bytes, size_t send_bytes, void **out)
{
    *out = NULL;
    if (is_phantom(index))
        *out = scratch_of(c, SCRATCH_OUT, bytes);
    else if (bytes == 0)
        return HERD_OK;
    else if (be->alloc_result != NULL)
        *out = be->alloc_result(be, bytes, send_bytes);
    else if (posix_memalign(out, 64, (bytes + 63) & ~(size_t)63) != 0)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate %zu bytes for the result",
                                bytes);
    return *out != NULL ? HERD_OK : HERD_ERR_NO_MEMORY; /* their messages are set */
}

/* Releases a result the operation could not hand over. */
static void drop_result(herd_coordinator_t *c, herd_backend_t *be, void *out, int device)
{
    if (out == NULL)
        return;
    if (be == c->d.cpu_backend)
        free(out);
    else
        herd__gpu_free(out, device);
}

/* Every rank learns whether any could not go on, and fails with the same status: this rank's
 * own (its message is set), or the worst of the others'. */
static int agree_or_fail(herd_backend_t *host, int status, const char *what)
{
    int worst = HERD_OK;
    int rc = host->agree(host, status, &worst);
    if (rc != HERD_OK)
        return rc;
    if (worst == HERD_OK)
        return HERD_OK;
    if (status != HERD_OK)
        return status;
    return herd__status_set(worst, "%s failed on another rank (%s)", what,
                            herd_status_name(worst));
}

/* Allgather of a count per rank: the counts are exchanged first, then every rank allocates
 * the result (failures agreed on, so nobody enters the collective alone), then one
 * MPI_Allgatherv. */
static int run_allgatherv(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g)
{
    (void)g;
    uint32_t index = c->group_ops[0];
    herd_request_t *r = request_of(c, index);
    size_t esize = herd__dtype_size(r->dtype);
    /* Counts and agreements are small host exchanges, for GPU memory too. */
    herd_backend_t *host = c->d.cpu_backend;
    if (be->allgatherv == NULL)
        return missing_entry(be, "allgatherv");
    int64_t mine = is_phantom(index) ? 0 : r->count;
    int rc = host->exchange(host, &mine, 1, c->counts);
    if (rc != HERD_OK)
        return rc;
    int64_t total = 0;
    for (int rank = 0; rank < c->size; rank++) {
        c->displs[rank] = total;
        total += c->counts[rank];
    }
    void *out = NULL;
    rc = result_buffer(c, be, index, (size_t)total * esize, (size_t)mine * esize, &out);
    rc = agree_or_fail(host, rc, "allocating the allgatherv result");
    if (rc == HERD_OK)
        rc = be->allgatherv(be, mine > 0 ? r->sendbuf : NULL, out, c->counts, c->displs,
                            r->dtype);
    if (is_phantom(index))
        return rc;
    if (rc != HERD_OK) {
        drop_result(c, be, out, r->device);
        return rc;
    }
    memcpy(r->counts_out, c->counts, sizeof *c->counts * (size_t)c->size);
    *r->recvbuf_out = out;
    return HERD_OK;
}

/* Reduce-scatter: rank r gets its rows of every member (Horovod's split). A fused group is
 * packed destination by destination, so each rank's share of every member is contiguous, and
 * reduced with one MPI_Reduce_scatter. Prescaling happens while packing (a lone tensor with a
 * prescale is packed too: its input is never written); division and postscale on the way out. */
static int run_reducescatter(herd_coordinator_t *c, herd_backend_t *be,
                             const herd_fusion_group_t *g)
{
    const uint32_t *ops = c->group_ops;
    herd_request_t *first = request_of(c, ops[0]);
    size_t esize = herd__dtype_size(first->dtype);
    int op = first->op == HERD_AVERAGE ? HERD_SUM : first->op;
    int divisor = first->op == HERD_AVERAGE ? contributors(c) : 1;
    if (be->reducescatter == NULL)
        return missing_entry(be, "reducescatter");
    int prescaled = 0;
    int rc = setup_phantoms(c, g, elems_count, elems_my_share);
    if (rc != HERD_OK)
        return rc;
    for (int64_t i = 0; i < g->count; i++)
        prescaled |= request_of(c, ops[i])->prescale != 1.0;
    for (int rank = 0; rank < c->size; rank++)
        c->counts[rank] = 0;
    for (int64_t i = 0; i < g->count; i++) {
        herd_request_t *r = request_of(c, ops[i]);
        for (int rank = 0; rank < c->size; rank++)
            c->counts[rank] += herd__rs_rows(r->count / r->row, c->size, rank) * r->row;
    }
    int64_t total = 0;
    for (int rank = 0; rank < c->size; rank++)
        total += c->counts[rank];
    if (total == 0)
        return HERD_OK;
    if (be != c->d.cpu_backend) /* GPU memory: alone, unscaled, AVERAGE on the device */
        return be->reducescatter(be, first->sendbuf, first->recvbuf, c->counts, first->dtype,
                                 first->op);
    if (!g->fused && !prescaled) {
        rc = be->reducescatter(be, first->sendbuf, first->recvbuf, c->counts, first->dtype, op);
        if (rc == HERD_OK && !is_phantom(ops[0]))
            herd__dtype_finish(first->dtype, first->recvbuf, (size_t)c->counts[c->rank], divisor,
                               first->postscale);
        return rc;
    }
    void *buf = NULL;
    rc = be->fusion_buffer(be, (size_t)(total + c->counts[c->rank]) * esize, &buf);
    if (rc != HERD_OK)
        return rc;
    char *packed = buf, *mine = (char *)buf + (size_t)total * esize;
    int64_t t0 = herd__clock_ns();
    size_t off = 0;
    for (int rank = 0; rank < c->size; rank++) {
        for (int64_t i = 0; i < g->count; i++) {
            herd_request_t *r = request_of(c, ops[i]);
            int64_t rows = r->count / r->row;
            int64_t first_el = herd__rs_first_row(rows, c->size, rank) * r->row;
            int64_t n = herd__rs_rows(rows, c->size, rank) * r->row;
            const char *src = (const char *)r->sendbuf + (size_t)first_el * esize;
            if (n > 0 && r->prescale != 1.0)
                herd__dtype_scale_copy(first->dtype, packed + off, src, (size_t)n, r->prescale);
            else if (n > 0)
                memcpy(packed + off, src, (size_t)n * esize);
            off += (size_t)n * esize;
        }
    }
    int64_t t1 = herd__clock_ns();
    rc = be->reducescatter(be, packed, mine, c->counts, first->dtype, op);
    int64_t t2 = herd__clock_ns();
    off = 0;
    for (int64_t i = 0; i < g->count && rc == HERD_OK; i++) {
        herd_request_t *r = request_of(c, ops[i]);
        int64_t n = herd__rs_rows(r->count / r->row, c->size, c->rank) * r->row;
        if (n > 0 && !is_phantom(ops[i])) {
            memcpy(r->recvbuf, mine + off, (size_t)n * esize);
            herd__dtype_finish(first->dtype, r->recvbuf, (size_t)n, divisor, r->postscale);
        }
        off += (size_t)n * esize;
    }
    c->phase_ns[0] += t1 - t0;
    c->phase_ns[1] += t2 - t1;
    c->phase_ns[2] += herd__clock_ns() - t2;
    return rc;
}

static int run_alltoall(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g)
{
    uint32_t index = c->group_ops[0];
    herd_request_t *r = request_of(c, index);
    if (be->alltoall == NULL)
        return missing_entry(be, "alltoall");
    size_t bytes = (size_t)r->count * herd__dtype_size(r->dtype);
    int rc = setup_phantoms(c, g, elems_count, elems_count); /* a joined rank sends zeros */
    if (rc != HERD_OK)
        return rc;
    if (bytes == 0)
        return HERD_OK;
    return be->alltoall(be, r->sendbuf, r->recvbuf, r->count / c->size, r->dtype);
}

/* All-to-all with counts per destination: what each rank sends to each is exchanged first;
 * every rank then allocates what it receives, agrees that all could, and moves the data. */
static int run_alltoallv(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g)
{
    (void)g;
    uint32_t index = c->group_ops[0];
    herd_request_t *r = request_of(c, index);
    size_t esize = herd__dtype_size(r->dtype);
    herd_backend_t *host = c->d.cpu_backend; /* counts and agreement */
    if (be->alltoallv == NULL)
        return missing_entry(be, "alltoallv");
    int64_t *send = c->counts, *sdispls = c->displs;
    int64_t *recv = c->counts + c->size, *rdispls = c->displs + c->size;
    int64_t off = 0;
    for (int rank = 0; rank < c->size; rank++) {
        send[rank] = is_phantom(index) ? 0 : r->sendcounts[rank];
        sdispls[rank] = off;
        off += send[rank];
    }
    int rc = host->exchange_alltoall(host, send, recv);
    if (rc != HERD_OK)
        return rc;
    int64_t total = 0;
    for (int rank = 0; rank < c->size; rank++) {
        rdispls[rank] = total;
        total += recv[rank];
    }
    void *out = NULL;
    rc = result_buffer(c, be, index, (size_t)total * esize, (size_t)off * esize, &out);
    /* MPI's counts are ints, and only this rank knows its own: agree before moving data. */
    if (rc == HERD_OK && (off > INT_MAX || total > INT_MAX))
        rc = herd__status_set(HERD_ERR_NOT_SUPPORTED,
                              "alltoallv of %lld elements sent, %lld received exceeds MPI's int "
                              "count limit", (long long)off, (long long)total);
    rc = agree_or_fail(host, rc, "preparing the alltoallv");
    if (rc == HERD_OK)
        rc = be->alltoallv(be, is_phantom(index) ? NULL : r->sendbuf, send, sdispls, out, recv,
                           rdispls, r->dtype);
    if (is_phantom(index))
        return rc;
    if (rc != HERD_OK) {
        drop_result(c, be, out, r->device);
        return rc;
    }
    memcpy(r->counts_out, recv, sizeof *recv * (size_t)c->size);
    *r->recvbuf_out = out;
    return HERD_OK;
}

/* Barrier: being ready on every rank is the whole operation. */
static int run_nothing(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g)
{
    (void)c;
    (void)be;
    (void)g;
    return HERD_OK;
}

typedef int (*run_fn)(herd_coordinator_t *c, herd_backend_t *be, const herd_fusion_group_t *g);

/* How each kind runs a group (op_kind.h says what it is; this says how it moves). */
static const run_fn runners[HERD_NUM_KINDS] = {
    [HERD_KIND_ALLREDUCE] = run_allreduce,
    [HERD_KIND_BROADCAST] = run_allreduce,
    [HERD_KIND_ALLGATHER] = run_allgather,
    [HERD_KIND_ALLGATHERV] = run_allgatherv,
    [HERD_KIND_REDUCESCATTER] = run_reducescatter,
    [HERD_KIND_ALLTOALL] = run_alltoall,
    [HERD_KIND_ALLTOALLV] = run_alltoallv,
    [HERD_KIND_BARRIER] = run_nothing,
    [HERD_KIND_JOIN] = run_nothing,
};

/* Refusals every rank reaches alike, before any data moves: from the joined set. */
static int refuse_group(herd_coordinator_t *c, const herd_request_t *first, const char *name)
{
    if (c->neg.njoined == 0)
        return HERD_OK;
    if (first->device >= 0)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                "tensor '%s': GPU operations cannot run while a rank has joined "
                                "(herd_join is host-side)", name);
    if (herd__kind(first->kind)->has_root && c->neg.joined[first->root])
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "tensor '%s': broadcast from root %d, which has joined and has "
                                "no data to send", name, first->root);
    return HERD_OK;
}

/* The group's PACK, collective and UNPACK on every member's row; pieces interleave the three,
 * so each is drawn as one span of its summed time. */
static void trace_group(herd_coordinator_t *c, const herd_fusion_group_t *g, int64_t start)
{
    herd_timeline_t *tl = c->d.timeline;
    herd_request_t *first = request_of(c, c->group_ops[0]);
    int coll = herd__kind(first->kind)->tl_phase;
    int64_t end = herd__clock_ns();
    for (int64_t i = 0; i < g->count; i++) {
        if (is_phantom(c->group_ops[i]))
            continue;
        herd_request_t *r = request_of(c, c->group_ops[i]);
        herd_tensor_t *t = r->tensor;
        herd__timeline_event(tl, HERD_TL_NEGOTIATE, t->key, t->name, r->intake_ns, start, 0, 0);
        herd__timeline_event(tl, HERD_TL_MARK, t->key, t->name, start, start, -1, 0);
        if (!g->fused || c->group_in_place) {
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
    c->group_in_place = 0;
    for (int64_t i = 0; i < g->count; i++)
        c->group_ops[i] = c->item_op[c->order[g->first + i]];
    herd_request_t *first = request_of(c, c->group_ops[0]);
    const char *first_name = op_name(c, c->group_ops[0]);
    /* A refusal is the same on every rank: then nobody calls the (collective) before_group. */
    int status = refuse_group(c, first, first_name);
    herd_backend_t *be = NULL;
    if (status == HERD_OK)
        be = backend_for(c, first, first_name, &status);
    c->group_scaled = 0;
    for (int64_t i = 0; i < g->count; i++) {
        const herd_request_t *r = request_of(c, c->group_ops[i]);
        c->group_scaled |= r->prescale != 1.0 || r->postscale != 1.0;
    }
    if (be != NULL && be->before_group != NULL) {
        int64_t bytes = g->bytes;
        int scratch = g->fused;
        device_needs(c, first, &bytes, &scratch);
        status = be->before_group(be, c->group_ops, g->count, bytes, scratch, status,
                                  &c->group_scaled);
    }
    if (status == HERD_OK)
        status = runners[first->kind](c, be, g);
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
        snprintf(message, sizeof message, "tensor '%s' (in a group of %lld tensors, %lld bytes): "
                 "%s", first_name, (long long)g->count, (long long)g->bytes,
                 herd__status_last());
        HERD_LOG_ERR("%s", message);
    }
    for (int64_t i = 0; i < g->count; i++)
        finish_op(c, c->group_ops[i], status, message);
    herd__handles_notify(c->d.handles);
}

/* A stand-in for a ready slot this rank has no op for because it has joined: the slot's
 * attributes (the same on every rank), buffers chosen when its group runs. */
static uint32_t make_phantom(herd_coordinator_t *c, int64_t slot)
{
    const herd_attrs_t *a = &c->neg.slots[slot].attrs;
    uint32_t i = c->nphantoms++;
    herd_request_t *r = &c->phantoms[i];
    *r = (herd_request_t){.kind = a->kind, .dtype = a->dtype, .op = a->op, .root = a->root,
                          .device = a->device, .count = a->count, .row = a->row,
                          .prescale = 1.0, .postscale = 1.0};
    if (herd__kind(a->kind)->count_varies)
        r->count = 0; /* nothing to contribute */
    c->phantom_slot[i] = slot;
    return i | PHANTOM_BIT;
}

/* Lists the ready ops of one device class, in priority order, from items[first]. */
static int64_t collect_ready(herd_coordinator_t *c, int gpu, int64_t first)
{
    herd_negotiator_t *n = &c->neg;
    int64_t count = first;
    for (int64_t i = 0; i < n->nready; i++) {
        int64_t slot = n->ready[i];
        herd_tensor_t *t = n->slots[slot].local;
        uint32_t index;
        if (t != NULL && t->pending != HERD_NO_INDEX && t->slot == slot) {
            index = t->pending;
        } else if (c->joined) {
            if ((n->slots[slot].attrs.device >= 0) != gpu)
                continue;
            index = make_phantom(c, slot);
        } else {
            /* Every rank said it has this op ready; this rank not having it is a bug. */
            if (!gpu)
                HERD_LOG_ERR("internal: slot %lld is ready everywhere but has no local op",
                             (long long)slot);
            continue;
        }
        herd_request_t *r = request_of(c, index);
        if ((r->device >= 0) != gpu)
            continue;
        const herd_kind_info_t *k = herd__kind(r->kind);
        c->items[count] = (herd_fusion_item_t){
            .kind = r->kind, .dtype = r->dtype, .op = r->op, .root = r->root,
            /* On a GPU only allreduce and broadcast fuse (the device fusion buffer). */
            .device_class = gpu,
            .solo = !k->fuses || (gpu && r->kind != HERD_KIND_ALLREDUCE &&
                                  r->kind != HERD_KIND_BROADCAST),
            /* The same number on every rank: a variable kind's count is not, and goes alone. */
            .bytes = k->count_varies ? 0 : r->count * (int64_t)herd__dtype_size(r->dtype)};
        c->item_op[count] = index;
        count++;
    }
    return count;
}

static void execute_ready(herd_coordinator_t *c)
{
    c->nphantoms = 0;
    /* Host groups first, then GPU groups: the same split and plan on every rank. */
    int64_t nhost = collect_ready(c, 0, 0);
    int64_t nall = collect_ready(c, 1, nhost);
    int64_t nhost_groups = 0, ngpu_groups = 0;
    int64_t host_limit = herd__config_group_limit(c->d.config, 0);
    int64_t gpu_limit = herd__config_group_limit(c->d.config, 1);
    herd__fusion_plan(c->items, nhost, host_limit, &c->scratch, c->order, c->groups,
                      &nhost_groups);
    herd__fusion_plan(c->items + nhost, nall - nhost, gpu_limit, &c->scratch, c->order + nhost,
                      c->groups + nhost_groups, &ngpu_groups);
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
    /* A rank that has joined takes part without asking: it learns the name here, so that it
     * can use the slot like every other rank once it submits the name itself. */
    if (t == NULL && ev->type == HERD_EVENT_NEW_SLOT && c->joined &&
        herd__registry_declare(c->d.registry, ev->name, ev->name_len, &t) != HERD_OK)
        t = NULL;
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
        if (ev->type == HERD_EVENT_JOINED) {
            c->last_joined = (int)ev->slot;
            if (c->joined)
                finish_op(c, c->join_op, HERD_OK, NULL);
            continue;
        }
        if (ev->type == HERD_EVENT_EXPIRED ||
            (ev->type == HERD_EVENT_ERROR && ev->status == HERD_ERR_STALLED))
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
                finish_op(c, t->pending, HERD_ERR_STALLED, ev->message);
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

/* A rank that has joined is ready for every cached op: its bits say so for every slot. */
static void joined_bits(const herd_coordinator_t *c, uint64_t *bits)
{
    for (int64_t s = 0; s < c->neg.nslots; s++)
        if (c->neg.slots[s].in_use)
            set_bit(bits, s);
}

/* Everything sized by the slot count grows here, when names are registered, and not in a later
 * round: the stall inspector's vector and gather too, though its first check may come much
 * later, in a training run's steady state. */
static int grow_for_slots(herd_coordinator_t *c)
{
    int64_t words = herd__negotiate_words(&c->neg);
    int rc = ensure((void **)&c->ready_bits, &c->ready_words_cap, words, sizeof(uint64_t));
    if (rc == HERD_OK)
        rc = ensure((void **)&c->round_words, &c->round_words_cap, HEADER_WORDS + words,
                    sizeof(uint64_t));
    if (rc != HERD_OK || c->stall_interval_ns <= 0)
        return rc;
    rc = ensure((void **)&c->stall_out, &c->stall_out_cap, 1 + words, sizeof(uint64_t));
    /* What every rank's 1 + words words make; the gather refuses more than 2 GiB anyway. */
    size_t gathered = (size_t)c->size * (size_t)(1 + words) * sizeof(uint64_t);
    if (rc == HERD_OK && gathered <= (size_t)INT32_MAX)
        rc = herd__ctrl_allgather_reserve(c->d.ctrl, gathered);
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
    if (c->joined)
        joined_bits(c, c->stall_out + 1);
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
    w[1] = (c->shutdown_asked ? AND_SHUTDOWN : 0) | (c->on_caller ? AND_CALLER : 0);
    if (words > 0) /* ready_bits is NULL until the first slot exists */
        memcpy(w + HEADER_WORDS, c->ready_bits, (size_t)words * sizeof *w);
    if (c->joined)
        joined_bits(c, w + HEADER_WORDS);
    /* When every rank's last round ran on a thread waiting for its op (back-to-back calls),
     * the ranks arrive within microseconds of each other: MPI's blocking allreduce, the fastest.
     * Otherwise (the coordinator thread, ops submitted during computation) a rank may wait
     * long for the others, and must not take the core the computation runs on while it does.
     * Every rank decides alike, from the last round's result. */
    if (!c->blocking_round)
        herd__count(HERD_CTR_ROUNDS_PATIENT);
    int rc = c->blocking_round
                 ? herd__ctrl_allreduce_band(c->d.ctrl, w, HEADER_WORDS + words)
                 : herd__ctrl_allreduce_band_patient(c->d.ctrl, w, HEADER_WORDS + words,
                                                     c->on_caller ? c->wait_spin_ns : 0);
    const char *const *blobs = NULL;
    const size_t *lens = NULL;
    if (rc == HERD_OK && (~w[0] & OR_NAMES))
        rc = herd__ctrl_allgather(c->d.ctrl, c->outbox, c->outbox_len, &blobs, &lens);
    c->outbox_len = 0;
    int all_shutdown = (w[1] & AND_SHUTDOWN) != 0;
    if (rc == HERD_OK)
        c->blocking_round = (w[1] & AND_CALLER) != 0;
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
    int64_t npending = c->npending;
    apply_events(c);
    execute_ready(c);
    herd__count(HERD_CTR_ROUNDS);
    if (c->npending == npending)
        herd__count(HERD_CTR_ROUNDS_IDLE);
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
        /* Receive peers' wakes even when this rank starts the round itself: each one left
         * unreceived holds MPI memory until shutdown. */
        int round = herd__ctrl_wake_poll(c->d.ctrl, c->epoch);
        if (round < 0) {
            break_down(c);
            continue;
        }
        if (has_local_news(c)) {
            if (herd__ctrl_wake_others(c->d.ctrl, c->epoch) != HERD_OK) {
                break_down(c);
                continue;
            }
            herd__count(HERD_CTR_WAKES_SENT);
            round = 1;
        }
        if (round) {
            if (run_round(c))
                return DRIVE_SHUTDOWN;
            spin_until = herd__clock_ns() + spin_ns;
            continue;
        }
        if (herd__clock_ns() >= spin_until)
            return DRIVE_IDLE;
        sched_yield(); /* looking again at once: let whatever shares this core run first */
    }
}

static void *coordinator_main(void *arg)
{
    herd_coordinator_t *c = arg;
    /* This thread's sleeps are short and on the latency path (a patient round polls every few
     * microseconds at first): the default 50 us of timer slack would be most of each. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
    int64_t sleep_ns = FIRST_SLEEP_NS;
    const int64_t max_sleep_ns = c->d.config->idle_poll_us * 1000;
    for (;;) {
        int waiting_on_peers = 0, on_gpu = 0;
        if (!atomic_load(&c->d.queue->driving)) {
            herd__mutex_lock(&c->progress);
            int64_t epoch = c->epoch;
            int64_t completed = c->completed;
            int r = drive(c, c->spin_ns, NULL, NULL);
            /* Rounds that only answered a peer while nothing is pending here say nothing about
             * when the next one comes: an application thread that drives its own waits will
             * start it. Looking again soon would only take its rounds from it. */
            int ran = c->epoch != epoch &&
                      (c->npending > 0 || c->joined || c->completed != completed);
            /* Where application threads drive their own waits they start the rounds (back to
             * back calls, a training step's waits). This thread's round then only answered a
             * peer a few microseconds before this rank's own driver would have: looking again
             * soon would take the next round from that driver too, and every round this
             * thread runs makes the next one patient on every rank (AND_CALLER). */
            if (c->caller_drove)
                ran = 0;
            c->caller_drove = 0;
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
        if (herd__queue_sleep(c->d.queue, deadline, !driving)) {
            herd__count(HERD_CTR_COORD_SIGNALS);
            sleep_ns = FIRST_SLEEP_NS;
        } else {
            herd__count(HERD_CTR_COORD_TIMEOUTS);
            sleep_ns = sleep_ns * 2 < cap ? sleep_ns * 2 : cap;
        }
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

int herd__coordinator_drive(herd_coordinator_t *c, herd_handle_t handle, int64_t deadline_ns)
{
    herd_request_queue_t *q = c->d.queue;
    handle_target_t target = {.handles = c->d.handles, .handle = handle};
    if (atomic_load(&q->driving)) {
        herd__count(HERD_CTR_DRIVE_BUSY);
        return 0;
    }
    if (pthread_mutex_trylock(&c->progress) != 0) {
        /* Most likely the coordinator thread, which lets go after its round: wait for that
         * rather than sleep until it next looks for wakes (up to HERD_IDLE_POLL_US / 4). */
        herd__count(HERD_CTR_DRIVE_BUSY);
        if (herd__mutex_lock_until(&c->progress, deadline_ns) != 0)
            return 0;
        if (atomic_load(&q->driving) || handle_done(&target)) {
            herd__mutex_unlock(&c->progress);
            return 0;
        }
    }
    atomic_store(&q->driving, 1);
    int64_t epoch = c->epoch;
    herd__count(HERD_CTR_DRIVES);
    int64_t spin_ns = c->wait_spin_ns > c->spin_ns ? c->wait_spin_ns : c->spin_ns;
    c->on_caller = 1;
    int r = drive(c, spin_ns, handle_done, &target);
    c->on_caller = 0;
    int ran = c->epoch != epoch;
    if (ran)
        c->caller_drove = 1;
    herd__counter_add(HERD_CTR_ROUNDS_CALLER, c->epoch - epoch);
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
    free(c->pre);
    free(c->post);
    free(c->counts);
    free(c->displs);
    free(c->phantoms);
    free(c->phantom_slot);
    free(c->scratch_mem[0]);
    free(c->scratch_mem[1]);
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
    c->wait_spin_ns = deps->config->wait_spin_us * 1000;
    c->stall_interval_ns = stall_interval_ns(deps->config);
    c->last_stall_check_ns = herd__clock_ns();
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
    c->last_joined = -1;
    c->rank_bits = calloc((size_t)c->size, sizeof *c->rank_bits);
    c->pre = calloc(n, sizeof *c->pre);
    c->post = calloc(n, sizeof *c->post);
    c->counts = calloc(2 * (size_t)c->size, sizeof *c->counts);
    c->displs = calloc(2 * (size_t)c->size, sizeof *c->displs);
    c->phantoms = calloc(n, sizeof *c->phantoms);
    c->phantom_slot = calloc(n, sizeof *c->phantom_slot);
    int rc = HERD_OK;
    if (!c->reannounce || !c->items || !c->item_op || !c->order || !c->groups ||
        !c->scratch.next || !c->srcs || !c->dsts || !c->sizes || !c->rank_bits ||
        !c->group_ops || !c->pre || !c->post || !c->counts || !c->displs || !c->phantoms ||
        !c->phantom_slot || !c->device_ops || !c->on_device)
        rc = herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate coordinator tables");
    if (rc == HERD_OK && herd__negotiate_init(&c->neg, c->size) != 0)
        rc = herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the negotiator");
    if (rc == HERD_OK && deps->timeline != NULL) {
        c->neg.observe = observe_request;
        c->neg.observe_ctx = c;
    }
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
