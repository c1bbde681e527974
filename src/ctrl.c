/* ctrl.c - see ctrl.h.
 *
 * Wake protocol: rounds are collective, so an idle rank must be told when another rank has new
 * work. Every rank keeps one receive posted for wake messages (tag WAKE_TAG on the control
 * communicator); a rank that finds new local work while idle sends its round number to every
 * other rank and enters the round. A wake for an earlier round is stale (its round already ran)
 * and is dropped. At shutdown, an all-to-all of counts tells each rank how many wakes are still
 * on their way to it, so it can receive them all before the communicator is freed.
 *
 * When every rank is on one host (and HERD_SHM is not 0 on any), a wake is a store instead of a
 * message: each rank owns one cache-line pair of a small MPI_Win_allocate_shared window and
 * writes there the round it asks for; a poll reads the peers' lines. Asking is idempotent (the
 * round number only grows), so nothing is queued and there is nothing to drain at shutdown.
 * That takes an MPI send, a test and a reposted receive, and the matching of the many stale
 * wakes, off every back-to-back round.
 *
 * The round's bitwise-AND allreduce goes through the same window: each rank writes its words to
 * one of two buffers in its region (by round parity), raises its round counter, waits for every
 * peer's, and ANDs everyone's words. A rank writes a buffer again two rounds later, by when
 * every peer has read it: a peer raises its counter for round k + 1 only after it finished round
 * k. Words beyond a buffer (more slots than BAND_WORDS * 64) go through MPI_Allreduce; the word
 * count is the same on every rank, so every rank makes the same choice.
 */
#include "ctrl.h"

#include <mpi.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "herd.h"
#include "log.h"
#include "status.h"
#include "util/clock.h"
#include "util/thread.h"

enum {
    WAKE_TAG = 7001,
    LINE = 128,                         /* a cache-line pair: no false sharing between ranks */
    BAND_WORDS = 2048,                  /* words of one round's buffer (16 KiB) */
    REGION = 2 * LINE + 2 * BAND_WORDS * 8, /* wake line, round line (+ pid), two buffers */
    SPINS = 512,                        /* polls of a peer's round counter before yielding */
    CHECK_NS = 10 * 1000 * 1000,        /* how often a long wait checks the peer's process */
};

enum { PATIENT_FIRST_SLEEP_NS = 5000, PATIENT_MAX_SLEEP_NS = 200000 };

struct herd_ctrl {
    MPI_Comm comm;
    /* Wakes travel on a communicator of their own: a wake nobody has received yet sits in
     * MPI's unexpected-message queue, and every receive posted on the same communicator (the
     * round's collectives) would scan past it. */
    MPI_Comm wake_comm;
    int rank, size, local_rank, local_size;
    int owns_mpi;
    /* wake messages (under the progress lock) */
    MPI_Request wake_recv;
    int64_t wake_in;
    MPI_Request *wake_send; /* one per peer */
    int64_t wake_out;
    int64_t *sent_to;       /* wakes sent to each rank */
    int64_t *received_from; /* wakes received from each rank */
    int sends_pending;
    /* the shared window (one host): wakes and the AND-allreduce; MPI_WIN_NULL when unused */
    MPI_Win wake_win;
    char **region;      /* each rank's region of the window, as mapped here */
    int64_t *wake_seen; /* the value last read from each rank, for the stale count */
    int64_t band_round; /* band allreduces run over the window so far (the same everywhere) */
    /* allgather buffers (under the progress lock) */
    int *counts, *displs;
    size_t *lens;
    const char **blobs;
    char *gathered;
    size_t gathered_cap;
};

int herd__ctrl_mpi_failed(int rc, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", rc);
    return herd__status_set(HERD_ERR_BACKEND, "%s failed: %s", what, text);
}

static const char *thread_level_name(int level)
{
    switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    default: return "MPI_THREAD_MULTIPLE";
    }
}

/* herd called MPI_Init_thread and no herd_shutdown has finalised it yet. Application thread. */
static int mpi_is_herds;

void herd__ctrl_finalize_leftover(void)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (mpi_is_herds && initialized && !finalized)
        MPI_Finalize();
    mpi_is_herds = 0;
}

/* Brings MPI up, or checks the program's MPI is usable from herd's thread. */
static int init_mpi(herd_ctrl_t *c)
{
    int finalized = 0, initialized = 0, provided = 0;
    MPI_Finalized(&finalized);
    if (finalized)
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "MPI has already been finalized; herd cannot start again in "
                                "this process");
    MPI_Initialized(&initialized);
    if (!initialized || mpi_is_herds) {
        if (!initialized) {
#ifdef OPEN_MPI
            /* Open MPI busy-polls while a collective waits; with no spare core (an unbound
             * rank, other jobs, a training step's compute) the rank it waits for may be the
             * one it keeps off the core, for a whole time slice. Yielding when a poll finds
             * nothing costs ~0.5 us of back-to-back latency and saved 40-60 % of herd.torch's
             * exchange under --bind-to none (docs/performance.md). The user's setting wins. */
            setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
#endif
            int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
            if (rc != MPI_SUCCESS)
                return herd__ctrl_mpi_failed(rc, "MPI_Init_thread");
            mpi_is_herds = 1;
        }
        MPI_Query_thread(&provided);
        c->owns_mpi = 1;
        /* herd alone calls MPI, one thread at a time (the progress lock): SERIALIZED is
         * enough. */
        if (provided < MPI_THREAD_SERIALIZED) {
            return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                    "this MPI provides only %s; herd needs at least "
                                    "MPI_THREAD_SERIALIZED",
                                    thread_level_name(provided));
        }
        return HERD_OK;
    }
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE)
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "the program initialised MPI with %s; herd calls MPI from its "
                                "own thread while the program may too, so initialise MPI with "
                                "MPI_THREAD_MULTIPLE (or let herd_init do it)",
                                thread_level_name(provided));
    return HERD_OK;
}

static int alloc_peers(herd_ctrl_t *c)
{
    size_t n = (size_t)c->size;
    c->wake_send = calloc(n, sizeof *c->wake_send);
    c->sent_to = calloc(n, sizeof *c->sent_to);
    c->received_from = calloc(n, sizeof *c->received_from);
    c->counts = calloc(n, sizeof *c->counts);
    c->displs = calloc(n, sizeof *c->displs);
    c->lens = calloc(n, sizeof *c->lens);
    c->blobs = calloc(n, sizeof *c->blobs);
    c->region = calloc(n, sizeof *c->region);
    c->wake_seen = calloc(n, sizeof *c->wake_seen);
    if (!c->wake_send || !c->sent_to || !c->received_from || !c->counts || !c->displs ||
        !c->lens || !c->blobs || !c->region || !c->wake_seen)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate per-rank tables for %d "
                                "ranks", c->size);
    for (size_t i = 0; i < n; i++)
        c->wake_send[i] = MPI_REQUEST_NULL;
    return HERD_OK;
}

static void free_peers(herd_ctrl_t *c)
{
    free(c->wake_send);
    free(c->sent_to);
    free(c->received_from);
    free(c->counts);
    free(c->displs);
    free(c->lens);
    free(c->blobs);
    free(c->region);
    free(c->wake_seen);
    free(c->gathered);
}

/* A rank's region: its wake line (the round it last asked for), its round line (the last band
 * allreduce whose words it has written, and its pid), then two word buffers. */
static _Atomic int64_t *wake_line(const herd_ctrl_t *c, int r)
{
    return (_Atomic int64_t *)(void *)c->region[r];
}

static _Atomic int64_t *round_line(const herd_ctrl_t *c, int r)
{
    return (_Atomic int64_t *)(void *)(c->region[r] + LINE);
}

static int *pid_slot(const herd_ctrl_t *c, int r)
{
    return (int *)(void *)(c->region[r] + LINE + 64);
}

static uint64_t *band_buffer(const herd_ctrl_t *c, int r, int64_t round)
{
    return (uint64_t *)(void *)(c->region[r] + 2 * LINE + (round & 1) * BAND_WORDS * 8);
}

/* The shared window for wakes and the AND-allreduce, when every rank is on this host and every
 * rank wants it (the ranks agree: the path must be the same everywhere). Collective. A failure
 * to get the window only logs and keeps MPI for both. */
static int open_shm_wakes(herd_ctrl_t *c, int want)
{
    int mine = want && c->local_size == c->size && c->size > 1, all = 0;
    int mrc = MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, c->comm);
    if (mrc != MPI_SUCCESS)
        return herd__ctrl_mpi_failed(mrc, "MPI_Allreduce (shared-memory wakes)");
    if (!all)
        return HERD_OK;
    void *base = NULL;
    mrc = MPI_Win_allocate_shared(REGION, 1, MPI_INFO_NULL, c->comm, &base, &c->wake_win);
    int ok = mrc == MPI_SUCCESS;
    for (int r = 0; r < c->size && ok; r++) {
        MPI_Aint sz = 0;
        int disp = 0;
        void *p = NULL;
        ok = MPI_Win_shared_query(c->wake_win, r, &sz, &disp, &p) == MPI_SUCCESS &&
             sz >= REGION && p != NULL;
        c->region[r] = p;
    }
    if (ok) {
        atomic_init(wake_line(c, c->rank), -1);
        atomic_init(round_line(c, c->rank), 0);
        *pid_slot(c, c->rank) = (int)getpid();
    }
    /* Everyone's line initialised before anyone reads one; and the same choice everywhere. */
    int agreed = 0;
    mrc = MPI_Allreduce(&ok, &agreed, 1, MPI_INT, MPI_MIN, c->comm);
    if (mrc != MPI_SUCCESS)
        return herd__ctrl_mpi_failed(mrc, "MPI_Allreduce (shared-memory wakes)");
    if (!agreed) {
        HERD_LOG_INF("negotiation over MPI: no shared window for its wakes and allreduce");
        if (c->wake_win != MPI_WIN_NULL)
            MPI_Win_free(&c->wake_win);
        c->wake_win = MPI_WIN_NULL;
        return HERD_OK;
    }
    for (int r = 0; r < c->size; r++)
        c->wake_seen[r] = -1;
    return HERD_OK;
}

int herd__ctrl_open(herd_ctrl_t **out, int shm_wakes)
{
    herd_ctrl_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the control plane");
    c->comm = MPI_COMM_NULL;
    c->wake_comm = MPI_COMM_NULL;
    c->wake_recv = MPI_REQUEST_NULL;
    c->wake_win = MPI_WIN_NULL;
    int rc = init_mpi(c);
    if (rc != HERD_OK)
        goto fail;
    int mrc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    if (mrc != MPI_SUCCESS) {
        rc = herd__ctrl_mpi_failed(mrc, "MPI_Comm_dup");
        goto fail;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    mrc = MPI_Comm_dup(c->comm, &c->wake_comm);
    if (mrc != MPI_SUCCESS) {
        rc = herd__ctrl_mpi_failed(mrc, "MPI_Comm_dup");
        goto fail;
    }
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    MPI_Comm node;
    mrc = MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    if (mrc != MPI_SUCCESS) {
        rc = herd__ctrl_mpi_failed(mrc, "MPI_Comm_split_type");
        goto fail;
    }
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    rc = alloc_peers(c);
    if (rc == HERD_OK)
        rc = open_shm_wakes(c, shm_wakes);
    if (rc != HERD_OK)
        goto fail;
    if (c->size > 1 && c->wake_win == MPI_WIN_NULL) {
        mrc = MPI_Irecv(&c->wake_in, 1, MPI_INT64_T, MPI_ANY_SOURCE, WAKE_TAG, c->wake_comm,
                        &c->wake_recv);
        if (mrc != MPI_SUCCESS) {
            rc = herd__ctrl_mpi_failed(mrc, "MPI_Irecv");
            goto fail;
        }
    }
    *out = c;
    return HERD_OK;
fail:
    if (c->wake_win != MPI_WIN_NULL)
        MPI_Win_free(&c->wake_win);
    if (c->wake_comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->wake_comm);
    if (c->comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->comm);
    free_peers(c);
    free(c); /* MPI stays up if herd started it: see herd__ctrl_release */
    return rc;
}

void herd__ctrl_close(herd_ctrl_t *c)
{
    if (c->wake_comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->wake_comm);
    if (c->comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->comm);
}

void herd__ctrl_release(herd_ctrl_t *c, int finalize)
{
    if (c == NULL)
        return;
    herd__ctrl_close(c);
    free_peers(c);
    if (c->owns_mpi && finalize)
        herd__ctrl_finalize_leftover();
    free(c);
}

int herd__ctrl_rank(const herd_ctrl_t *c) { return c->rank; }
int herd__ctrl_size(const herd_ctrl_t *c) { return c->size; }
int herd__ctrl_local_rank(const herd_ctrl_t *c) { return c->local_rank; }
int herd__ctrl_local_size(const herd_ctrl_t *c) { return c->local_size; }
const void *herd__ctrl_world(const herd_ctrl_t *c) { return &c->comm; }

/* Waits until rank r has written its words for `round`. Polls SPINS times, then until
 * `spin_ns` have passed yields the core between polls (patient: sleeps, backing off from a few
 * microseconds to a fraction of a millisecond), as MPI's blocking and nonblocking waits do.
 * Every CHECK_NS it checks that r's process still exists: a local peer that exited fails the
 * round instead of hanging it. */
static int wait_round(herd_ctrl_t *c, int r, int64_t round, int patient, int64_t spin_ns)
{
    _Atomic int64_t *line = round_line(c, r);
    /* A patient round with no spin (the coordinator thread, ranks computing) looks once and
     * then sleeps: it must not take the core from the computation. */
    int spins = patient && spin_ns == 0 ? 1 : SPINS;
    for (int i = 0; i < spins; i++) {
        if (atomic_load_explicit(line, memory_order_acquire) >= round)
            return HERD_OK;
        herd__cpu_relax();
    }
    int64_t start = herd__clock_ns(), check = start + CHECK_NS;
    int64_t nap = PATIENT_FIRST_SLEEP_NS;
    while (atomic_load_explicit(line, memory_order_acquire) < round) {
        int64_t now = herd__clock_ns();
        if (!patient || now - start < spin_ns) {
            sched_yield();
        } else {
            struct timespec ts = {0, (long)nap};
            nanosleep(&ts, NULL);
            nap = nap * 2 < PATIENT_MAX_SLEEP_NS ? nap * 2 : PATIENT_MAX_SLEEP_NS;
        }
        if (now < check)
            continue;
        check = now + CHECK_NS;
        int pid = *pid_slot(c, r);
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
            return herd__status_set(HERD_ERR_BACKEND,
                                    "negotiation: rank %d (pid %d, on this host) has exited",
                                    r, pid);
    }
    return HERD_OK;
}

static int shm_band(herd_ctrl_t *c, uint64_t *words, int64_t n, int patient, int64_t spin_ns)
{
    int64_t round = ++c->band_round;
    memcpy(band_buffer(c, c->rank, round), words, (size_t)n * sizeof *words);
    atomic_store_explicit(round_line(c, c->rank), round, memory_order_release);
    for (int i = 1; i < c->size; i++) {
        int r = (c->rank + i) % c->size;
        int rc = wait_round(c, r, round, patient, spin_ns);
        if (rc != HERD_OK)
            return rc;
        const uint64_t *theirs = band_buffer(c, r, round);
        for (int64_t k = 0; k < n; k++)
            words[k] &= theirs[k];
    }
    return HERD_OK;
}

int herd__ctrl_allreduce_band(herd_ctrl_t *c, uint64_t *words, int64_t n)
{
    if (c->wake_win != MPI_WIN_NULL && n <= BAND_WORDS)
        return shm_band(c, words, n, 0, 0);
    int rc = MPI_Allreduce(MPI_IN_PLACE, words, (int)n, MPI_UINT64_T, MPI_BAND, c->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "negotiation MPI_Allreduce");
}

int herd__ctrl_allreduce_band_patient(herd_ctrl_t *c, uint64_t *words, int64_t n,
                                      int64_t spin_ns)
{
    if (c->wake_win != MPI_WIN_NULL && n <= BAND_WORDS)
        return shm_band(c, words, n, 1, spin_ns);
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, words, (int)n, MPI_UINT64_T, MPI_BAND, c->comm, &req);
    if (rc != MPI_SUCCESS)
        return herd__ctrl_mpi_failed(rc, "negotiation MPI_Iallreduce");
    int64_t spin_until = herd__clock_ns() + spin_ns;
    int64_t sleep_ns = PATIENT_FIRST_SLEEP_NS;
    for (;;) {
        int done = 0;
        rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return herd__ctrl_mpi_failed(rc, "MPI_Test on the negotiation MPI_Iallreduce");
        if (done)
            return HERD_OK;
        if (herd__clock_ns() < spin_until)
            continue;
        struct timespec pause = {.tv_sec = 0, .tv_nsec = sleep_ns};
        nanosleep(&pause, NULL);
        sleep_ns = sleep_ns * 2 < PATIENT_MAX_SLEEP_NS ? sleep_ns * 2 : PATIENT_MAX_SLEEP_NS;
    }
}

int herd__ctrl_bcast(herd_ctrl_t *c, void *buf, size_t bytes, int root)
{
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, c->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "control-plane MPI_Bcast");
}

int herd__ctrl_allgather_reserve(herd_ctrl_t *c, size_t bytes)
{
    if (bytes <= c->gathered_cap)
        return HERD_OK;
    char *g = realloc(c->gathered, bytes);
    if (g == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot hold %zu bytes of negotiation "
                                "messages", bytes);
    c->gathered = g;
    c->gathered_cap = bytes;
    return HERD_OK;
}

int herd__ctrl_allgather(herd_ctrl_t *c, const char *mine, size_t len, const char *const **blobs,
                         const size_t **lens)
{
    if (len > (size_t)INT32_MAX)
        return herd__status_set(HERD_ERR_INTERNAL, "negotiation message of %zu bytes", len);
    int mylen = (int)len;
    int rc = MPI_Allgather(&mylen, 1, MPI_INT, c->counts, 1, MPI_INT, c->comm);
    if (rc != MPI_SUCCESS)
        return herd__ctrl_mpi_failed(rc, "negotiation MPI_Allgather");
    size_t total = 0;
    for (int r = 0; r < c->size; r++) {
        c->displs[r] = (int)total;
        total += (size_t)c->counts[r];
        if (total > (size_t)INT32_MAX)
            return herd__status_set(HERD_ERR_INTERNAL, "negotiation messages exceed 2 GiB");
    }
    rc = herd__ctrl_allgather_reserve(c, total);
    if (rc != HERD_OK)
        return rc;
    rc = MPI_Allgatherv(mine, mylen, MPI_BYTE, c->gathered, c->counts, c->displs, MPI_BYTE,
                        c->comm);
    if (rc != MPI_SUCCESS)
        return herd__ctrl_mpi_failed(rc, "negotiation MPI_Allgatherv");
    for (int r = 0; r < c->size; r++) {
        c->blobs[r] = c->gathered + c->displs[r];
        c->lens[r] = (size_t)c->counts[r];
    }
    *blobs = c->blobs;
    *lens = c->lens;
    return HERD_OK;
}

int herd__ctrl_wake_others(herd_ctrl_t *c, int64_t epoch)
{
    if (c->size == 1)
        return HERD_OK;
    if (c->wake_win != MPI_WIN_NULL) {
        atomic_store_explicit(wake_line(c, c->rank), epoch, memory_order_release);
        return HERD_OK;
    }
    /* The previous batch shares wake_out: finish it first (tiny eager messages, long sent). */
    if (c->sends_pending) {
        int rc = MPI_Waitall(c->size, c->wake_send, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return herd__ctrl_mpi_failed(rc, "MPI_Waitall on wake messages");
        c->sends_pending = 0;
    }
    c->wake_out = epoch;
    for (int r = 0; r < c->size; r++) {
        if (r == c->rank)
            continue;
        int rc = MPI_Isend(&c->wake_out, 1, MPI_INT64_T, r, WAKE_TAG, c->wake_comm,
                           &c->wake_send[r]);
        if (rc != MPI_SUCCESS)
            return herd__ctrl_mpi_failed(rc, "MPI_Isend of a wake message");
        c->sent_to[r]++;
    }
    c->sends_pending = 1;
    return HERD_OK;
}

/* A peer's line holds the last round it asked for: live when that is this rank's next round;
 * a change to an earlier round is a stale ask, counted as such. */
static int shm_wake_poll(herd_ctrl_t *c, int64_t epoch)
{
    for (int r = 0; r < c->size; r++) {
        if (r == c->rank)
            continue;
        int64_t asked = atomic_load_explicit(wake_line(c, r), memory_order_acquire);
        if (asked == c->wake_seen[r])
            continue;
        c->wake_seen[r] = asked;
        if (asked >= epoch) {
            herd__count(HERD_CTR_WAKES_LIVE);
            return 1;
        }
        herd__count(HERD_CTR_WAKES_STALE);
    }
    return 0;
}

int herd__ctrl_wake_poll(herd_ctrl_t *c, int64_t epoch)
{
    if (c->size == 1)
        return 0;
    if (c->wake_win != MPI_WIN_NULL)
        return shm_wake_poll(c, epoch);
    for (;;) {
        int done = 0;
        MPI_Status st;
        int rc = MPI_Test(&c->wake_recv, &done, &st);
        if (rc != MPI_SUCCESS)
            return herd__ctrl_mpi_failed(rc, "MPI_Test on the wake receive");
        if (!done)
            return 0;
        c->received_from[st.MPI_SOURCE]++;
        int64_t asked = c->wake_in;
        rc = MPI_Irecv(&c->wake_in, 1, MPI_INT64_T, MPI_ANY_SOURCE, WAKE_TAG, c->wake_comm,
                       &c->wake_recv);
        if (rc != MPI_SUCCESS)
            return herd__ctrl_mpi_failed(rc, "MPI_Irecv for wake messages");
        if (asked >= epoch) {
            herd__count(HERD_CTR_WAKES_LIVE);
            return 1;
        }
        herd__count(HERD_CTR_WAKES_STALE);
    }
}

int herd__ctrl_quiesce(herd_ctrl_t *c)
{
    if (c->size == 1)
        return HERD_OK;
    if (c->wake_win != MPI_WIN_NULL) /* every rank is here: the collective free is safe */
        return MPI_Win_free(&c->wake_win) == MPI_SUCCESS
                   ? HERD_OK
                   : herd__status_set(HERD_ERR_BACKEND, "MPI_Win_free of the wake window failed");
    int rc = MPI_SUCCESS;
    if (c->sends_pending) {
        rc = MPI_Waitall(c->size, c->wake_send, MPI_STATUSES_IGNORE);
        c->sends_pending = 0;
    }
    int64_t *expected = calloc((size_t)c->size, sizeof *expected);
    if (expected == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate shutdown tables");
    if (rc == MPI_SUCCESS)
        rc = MPI_Alltoall(c->sent_to, 1, MPI_INT64_T, expected, 1, MPI_INT64_T, c->comm);
    if (rc == MPI_SUCCESS) {
        /* Settle the standing receive: it either matched a wake or is cancelled. */
        MPI_Status st;
        MPI_Cancel(&c->wake_recv);
        rc = MPI_Wait(&c->wake_recv, &st);
        int cancelled = 0;
        MPI_Test_cancelled(&st, &cancelled);
        if (rc == MPI_SUCCESS && !cancelled)
            c->received_from[st.MPI_SOURCE]++;
    }
    for (int r = 0; r < c->size && rc == MPI_SUCCESS; r++) {
        while (c->received_from[r] < expected[r] && rc == MPI_SUCCESS) {
            int64_t stale;
            rc = MPI_Recv(&stale, 1, MPI_INT64_T, r, WAKE_TAG, c->wake_comm, MPI_STATUS_IGNORE);
            c->received_from[r]++;
        }
    }
    free(expected);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "shutdown of wake messages");
}
