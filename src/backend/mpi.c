/* backend/mpi.c - host-memory collectives with MPI. fp16 and bf16 reduce through user-defined MPI
 * operations that combine pairs in float32 and round to nearest even; AVERAGE is a sum followed by
 * a division, done piece by piece while the piece is still in cache. When every rank is on one
 * host, allreduce, broadcast, allgather(v) and reducescatter run on the shared-memory plane
 * (backend/shm.h) in a segment MPI allocates (MPI_Win_allocate_shared: MPI creates and removes
 * it, herd leaves no file behind); across hosts, allreduce runs on it hierarchically and the
 * other kinds on MPI. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/shm.h"
#include "ctrl.h"
#include "dtype.h"
#include "herd.h"
#include "log.h"
#include "status.h"
#include "util/clock.h"

/* Allreduces of any size go to the shared-memory plane where it runs: once the negotiation
 * itself left MPI (ctrl.c's window), a 4-byte allreduce on the plane made herd's back-to-back
 * round 1.0-1.2 us against 2.1-2.3 us with MPI's tiny-message path (MPI_Allreduce alone:
 * 0.7-0.8 us), alternating launches, both bindings. The other
 * kinds go to the plane only when every rank is on this host, above their own floors, measured
 * at 2 ranks under both bindings (docs/shm.md): broadcasts up to 2 KiB and allgathers of up to
 * 4 KiB in all stay on MPI's eager path (the plane won in some series there, lost in others;
 * from a 4 KiB broadcast, and 4 KiB per rank, it won in every series, 1.2-2.4x up to 4 MiB;
 * allgathers of 16 MiB per rank and more are a tie); reducescatters never (the plane won at
 * almost every size in every series, 5-8x from 256 KiB). Each floor applies to a number
 * every rank has alike (the broadcast, the gathered total, the whole input), so every rank
 * makes the same choice. */
enum { SHM_MIN_BYTES = 0, SHM_MIN_BCAST_BYTES = 2048, SHM_MIN_GATHER_BYTES = 4096,
       SHM_MIN_SCATTER_BYTES = 0 };

typedef struct mpi_backend {
    herd_backend_t base;
    MPI_Comm comm;
    int size;
    int64_t chunk_bytes;
    MPI_Op half_ops[2][HERD_NUM_OPS]; /* [0] fp16, [1] bf16; AVERAGE uses SUM's */
    void *fusion;
    size_t fusion_cap;
    size_t fusion_min;      /* the size the fusion buffer is made at (when it can be): the
                             * largest fused group */
    int *icounts, *idispls; /* 2 * size ints each: MPI's int counts, made once */
    herd_shm_t *shm;        /* the intra-node plane; NULL: MPI only */
    int shm_flat;           /* the plane spans every rank (no hosts beyond): the copy and
                             * reduce-scatter kinds may use it too */
    int64_t *lcounts, *ldispls; /* size entries each: an equal allgather's parts, made once */
    MPI_Win win;            /* its segment */
    MPI_Comm cross;         /* hierarchical: the ranks of this local index on every host */
    MPI_Comm node;          /* the ranks of this host, while the segment is mapped */
    int64_t close_timeout_ms; /* HERD_SHUTDOWN_TIMEOUT_SECONDS, for shm_close */
} mpi_backend_t;

#define HALF_OP(fn, dtype, op)                                                                 \
    static void fn(void *in, void *inout, int *len, MPI_Datatype *type)                       \
    {                                                                                          \
        (void)type;                                                                            \
        herd__half_combine(dtype, op, in, inout, (size_t)*len);                                \
    }
HALF_OP(fp16_sum, HERD_FLOAT16, HERD_SUM)
HALF_OP(fp16_min, HERD_FLOAT16, HERD_MIN)
HALF_OP(fp16_max, HERD_FLOAT16, HERD_MAX)
HALF_OP(fp16_prod, HERD_FLOAT16, HERD_PRODUCT)
HALF_OP(bf16_sum, HERD_BFLOAT16, HERD_SUM)
HALF_OP(bf16_min, HERD_BFLOAT16, HERD_MIN)
HALF_OP(bf16_max, HERD_BFLOAT16, HERD_MAX)
HALF_OP(bf16_prod, HERD_BFLOAT16, HERD_PRODUCT)

static MPI_Datatype mpi_type(int dtype)
{
    switch (dtype) {
    case HERD_UINT8: return MPI_UINT8_T;
    case HERD_INT8: return MPI_INT8_T;
    case HERD_INT32: return MPI_INT32_T;
    case HERD_INT64: return MPI_INT64_T;
    case HERD_FLOAT16: return MPI_UINT16_T;
    case HERD_BFLOAT16: return MPI_UINT16_T;
    case HERD_FLOAT32: return MPI_FLOAT;
    default: return MPI_DOUBLE;
    }
}

static MPI_Op mpi_op(const mpi_backend_t *m, int dtype, int op)
{
    if (op == HERD_AVERAGE)
        op = HERD_SUM;
    if (dtype == HERD_FLOAT16 || dtype == HERD_BFLOAT16)
        return m->half_ops[dtype == HERD_BFLOAT16][op];
    switch (op) {
    case HERD_MIN: return MPI_MIN;
    case HERD_MAX: return MPI_MAX;
    case HERD_PRODUCT: return MPI_PROD;
    default: return MPI_SUM;
    }
}

/* Elements per piece: chunk_bytes worth, at least one, at most INT_MAX. */
static int64_t piece_elems(const mpi_backend_t *m, size_t esize)
{
    int64_t n = m->chunk_bytes > 0 ? m->chunk_bytes / (int64_t)esize : INT_MAX;
    if (n < 1)
        n = 1;
    return n > INT_MAX ? INT_MAX : n;
}

static int mpi_broadcast(herd_backend_t *be, void *buf, int64_t count, int dtype, int root)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int64_t bytes = count * (int64_t)herd__dtype_size(dtype);
    if (m->shm_flat && bytes > SHM_MIN_BCAST_BYTES)
        return herd__shm_broadcast(m->shm, buf, bytes, root);
    int64_t step = piece_elems(m, 1);
    for (int64_t off = 0; off < bytes; off += step) {
        int n = (int)(bytes - off < step ? bytes - off : step);
        int rc = MPI_Bcast((char *)buf + off, n, MPI_BYTE, root, m->comm);
        if (rc != MPI_SUCCESS)
            return herd__ctrl_mpi_failed(rc, "MPI_Bcast");
    }
    return HERD_OK;
}

static int mpi_allreduce_scaled(herd_backend_t *be, const void *send, void *recv, int64_t count,
                                int dtype, int op, const herd_scale_t *scale)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    if (m->shm != NULL && count * (int64_t)herd__dtype_size(dtype) > SHM_MIN_BYTES)
        return herd__shm_allreduce(m->shm, send, recv, count, dtype, op, scale);
    size_t esize = herd__dtype_size(dtype);
    int64_t step = piece_elems(m, esize);
    MPI_Datatype type = mpi_type(dtype);
    MPI_Op mop = mpi_op(m, dtype, op);
    /* Piece by piece: the input is scaled into the output while the piece is in cache, reduced
     * there in place, and finished (divisor, postscale) before the next piece. */
    for (int64_t off = 0; off < count; off += step) {
        int n = (int)(count - off < step ? count - off : step);
        char *out = (char *)recv + (size_t)off * esize;
        const char *in = (const char *)send + (size_t)off * esize;
        const void *from = send == recv ? MPI_IN_PLACE : in;
        if (scale->pre != 1.0) {
            herd__dtype_scale_copy(dtype, out, in, (size_t)n, scale->pre);
            from = MPI_IN_PLACE;
        }
        int rc = MPI_Allreduce(from, out, n, type, mop, m->comm);
        if (rc != MPI_SUCCESS)
            return herd__ctrl_mpi_failed(rc, "MPI_Allreduce");
        herd__dtype_finish(dtype, out, (size_t)n, scale->divisor, scale->post);
    }
    return HERD_OK;
}

/* Plain allreduce: AVERAGE is a sum and a division by the number of ranks, piece by piece. */
static int mpi_allreduce(herd_backend_t *be, const void *send, void *recv, int64_t count,
                         int dtype, int op)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    herd_scale_t s = {.pre = 1.0, .post = 1.0, .divisor = op == HERD_AVERAGE ? m->size : 1};
    return mpi_allreduce_scaled(be, send, recv, count, dtype, op == HERD_AVERAGE ? HERD_SUM : op,
                                &s);
}

/* MPI counts are ints: a count or displacement beyond INT_MAX elements is refused (every rank
 * sees the same numbers, so every rank refuses alike). */
static int fits_int(const int64_t *v, int n, int *out, const char *what)
{
    for (int i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > INT_MAX)
            return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                    "%s %lld exceeds MPI's int count limit (%d elements)", what,
                                    (long long)v[i], INT_MAX);
        out[i] = (int)v[i];
    }
    return HERD_OK;
}

static int mpi_allgather(herd_backend_t *be, const void *send, void *recv, int64_t count,
                         int dtype)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    size_t esize = herd__dtype_size(dtype);
    if (m->shm_flat && count * m->size * (int64_t)esize > SHM_MIN_GATHER_BYTES) {
        for (int r = 0; r < m->size; r++) {
            m->lcounts[r] = count;
            m->ldispls[r] = r * count;
        }
        return herd__shm_allgather(m->shm, send, recv, m->lcounts, m->ldispls, esize);
    }
    int n = 0;
    int rc = fits_int(&count, 1, &n, "allgather count");
    if (rc != HERD_OK)
        return rc;
    rc = MPI_Allgather(send, n, mpi_type(dtype), recv, n, mpi_type(dtype), m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Allgather");
}

static int mpi_allgatherv(herd_backend_t *be, const void *send, void *recv,
                          const int64_t *counts, const int64_t *displs, int dtype)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int rank, rc;
    /* The total, not this rank's part: the same on every rank, so every rank chooses alike. */
    int64_t total = 0;
    for (int r = 0; r < m->size; r++)
        total += counts[r];
    size_t esize = herd__dtype_size(dtype);
    if (m->shm_flat && total * (int64_t)esize > SHM_MIN_GATHER_BYTES)
        return herd__shm_allgather(m->shm, send, recv, counts, displs, esize);
    MPI_Comm_rank(m->comm, &rank);
    rc = fits_int(counts, m->size, m->icounts, "allgatherv count");
    if (rc == HERD_OK)
        rc = fits_int(displs, m->size, m->idispls, "allgatherv displacement");
    if (rc != HERD_OK)
        return rc;
    rc = MPI_Allgatherv(send, m->icounts[rank], mpi_type(dtype), recv, m->icounts, m->idispls,
                        mpi_type(dtype), m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Allgatherv");
}

static int mpi_reducescatter(herd_backend_t *be, const void *send, void *recv,
                             const int64_t *counts, int dtype, int op)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int64_t total = 0;
    for (int r = 0; r < m->size; r++)
        total += counts[r];
    if (m->shm_flat && total * (int64_t)herd__dtype_size(dtype) > SHM_MIN_SCATTER_BYTES) {
        int rc = herd__shm_reducescatter(m->shm, send, recv, counts, dtype,
                                         op == HERD_AVERAGE ? HERD_SUM : op);
        if (rc != HERD_ERR_NOT_SUPPORTED) /* else refused alike everywhere: MPI's turn */
            return rc;
        herd__status_clear();
    }
    int rc = fits_int(counts, m->size, m->icounts, "reducescatter count");
    if (rc != HERD_OK)
        return rc;
    if (total == 0)
        return HERD_OK; /* MPI wants no buffers at all; every rank knows the same total */
    rc = MPI_Reduce_scatter(send, recv, m->icounts, mpi_type(dtype), mpi_op(m, dtype, op),
                            m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Reduce_scatter");
}

static int mpi_alltoall(herd_backend_t *be, const void *send, void *recv, int64_t count,
                        int dtype)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int n = 0;
    int rc = fits_int(&count, 1, &n, "alltoall count per rank");
    if (rc != HERD_OK)
        return rc;
    rc = MPI_Alltoall(send, n, mpi_type(dtype), recv, n, mpi_type(dtype), m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Alltoall");
}

static int mpi_alltoallv(herd_backend_t *be, const void *send, const int64_t *sendcounts,
                         const int64_t *sdispls, void *recv, const int64_t *recvcounts,
                         const int64_t *rdispls, int dtype)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int p = m->size;
    /* These counts are this rank's own, so a refusal here must be agreed first (the caller
     * does, through agree). */
    int rc = fits_int(sendcounts, p, m->icounts, "alltoallv count");
    if (rc == HERD_OK)
        rc = fits_int(sdispls, p, m->idispls, "alltoallv displacement");
    if (rc == HERD_OK)
        rc = fits_int(recvcounts, p, m->icounts + p, "alltoallv count");
    if (rc == HERD_OK)
        rc = fits_int(rdispls, p, m->idispls + p, "alltoallv displacement");
    if (rc != HERD_OK)
        return rc;
    rc = MPI_Alltoallv(send, m->icounts, m->idispls, mpi_type(dtype), recv, m->icounts + p,
                       m->idispls + p, mpi_type(dtype), m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Alltoallv");
}

static int mpi_exchange(herd_backend_t *be, const int64_t *mine, int64_t n, int64_t *all)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int rc = MPI_Allgather(mine, (int)n, MPI_INT64_T, all, (int)n, MPI_INT64_T, m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Allgather of counts");
}

static int mpi_exchange_alltoall(herd_backend_t *be, const int64_t *send, int64_t *recv)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int rc = MPI_Alltoall(send, 1, MPI_INT64_T, recv, 1, MPI_INT64_T, m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Alltoall of counts");
}

static int mpi_agree(herd_backend_t *be, int status, int *worst)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    int rc = MPI_Allreduce(&status, worst, 1, MPI_INT, MPI_MIN, m->comm);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Allreduce (agreement)");
}

static void host_copy(void *be, void *dst, const void *src, size_t n)
{
    (void)be;
    memcpy(dst, src, n);
}

/* Allocated when first needed (a process that never fuses holds none) at the largest fused
 * group's size, so groups that grow from step to step as tensors become ready in different
 * bunches never reallocate it in the steady state; only larger uses (gathers' results) grow it
 * later. Pages are touched only as groups fill them. When that much cannot be had, the group's
 * own size, and the largest size is tried again at the next growth. */
static int host_fusion_buffer(herd_backend_t *be, size_t bytes, void **out)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    if (bytes > m->fusion_cap) {
        /* 64-byte aligned: every dtype is aligned and vector loads do not split lines. */
        size_t cap = (bytes + 63) & ~(size_t)63;
        size_t most = (m->fusion_min + 63) & ~(size_t)63;
        void *p = NULL;
        if (most > cap && posix_memalign(&p, 64, most) == 0)
            cap = most;
        else if (posix_memalign(&p, 64, cap) != 0)
            return herd__status_set(HERD_ERR_NO_MEMORY,
                                    "cannot allocate a %zu-byte fusion buffer", cap);
        free(m->fusion);
        m->fusion = p;
        m->fusion_cap = cap;
    }
    *out = m->fusion;
    return HERD_OK;
}

static int host_finish(herd_backend_t *be)
{
    (void)be;
    return HERD_OK;
}

/* MPI_Win_free is collective over the host's ranks: a rank whose herd_shutdown timed out never
 * calls it, and the others would wait in it forever. So the local ranks first meet in a
 * non-blocking barrier for at most the shutdown timeout; without every one of them the segment
 * stays mapped until MPI_Finalize (a warning says so). */
static void shm_close(mpi_backend_t *m)
{
    herd__shm_detach(m->shm);
    m->shm = NULL;
    m->shm_flat = 0;
    if (m->win != MPI_WIN_NULL) {
        MPI_Request req = MPI_REQUEST_NULL;
        int done = MPI_Ibarrier(m->node, &req) != MPI_SUCCESS;
        int64_t deadline = herd__clock_ns() + m->close_timeout_ms * 1000000;
        while (!done && (m->close_timeout_ms == 0 || herd__clock_ns() < deadline)) {
            if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                break;
            if (!done) {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
        }
        if (done) {
            MPI_Win_unlock_all(m->win);
            MPI_Win_free(&m->win);
        } else {
            HERD_LOG_WRN("shared-memory plane: not every local rank shut down within %.1f s "
                         "(HERD_SHUTDOWN_TIMEOUT_SECONDS); its segment stays mapped until "
                         "MPI_Finalize",
                         (double)m->close_timeout_ms / 1000.0);
            m->win = MPI_WIN_NULL;
        }
    }
    if (m->node != MPI_COMM_NULL)
        MPI_Comm_free(&m->node);
    if (m->cross != MPI_COMM_NULL)
        MPI_Comm_free(&m->cross);
}

/* The plane's step across hosts (hierarchical allreduce): this rank's host-reduced part with
 * the same part on every other host, on the communicator of this local rank index. */
static int shm_across(void *ctx, void *buf, int64_t count, int dtype, int op)
{
    mpi_backend_t *m = ctx;
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, mpi_type(dtype), mpi_op(m, dtype, op),
                           m->cross);
    return rc == MPI_SUCCESS ? HERD_OK : herd__ctrl_mpi_failed(rc, "MPI_Allreduce across hosts");
}

/* Maps the segment and attaches the plane: flat when every rank is on this host, hierarchical
 * (HERD_HIERARCHICAL_ALLREDUCE) when every host has the same number of ranks, more than one.
 * Every rank ends with the plane or every rank without it (an allreduce of the outcome): the
 * data path must agree. A plane that cannot start is not an error: herd stays on MPI and says
 * why. */
static int shm_open(mpi_backend_t *m, const herd_config_t *cfg)
{
    if (!cfg->shm || m->size < 2)
        return HERD_OK;
    int rank = 0, local = 0, me = 0, ok = 0, all = 0, sizes[2] = {0, 0};
    MPI_Comm_rank(m->comm, &rank);
    int rc = MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &m->node);
    if (rc != MPI_SUCCESS) {
        m->node = MPI_COMM_NULL;
        return herd__ctrl_mpi_failed(rc, "MPI_Comm_split_type for the shared-memory plane");
    }
    MPI_Comm node = m->node;
    MPI_Comm_size(node, &local);
    MPI_Comm_rank(node, &me);
    /* Every host alike? (the smallest and, negated, the largest local size) */
    int mine[2] = {local, -local};
    rc = MPI_Allreduce(mine, sizes, 2, MPI_INT, MPI_MIN, m->comm);
    int hier = local < m->size;
    const char *why = "hosts with different numbers of ranks";
    if (rc == MPI_SUCCESS && hier && !cfg->shm_hierarchical)
        why = "ranks on more than one host and HERD_HIERARCHICAL_ALLREDUCE=0";
    else if (rc == MPI_SUCCESS && hier && local < 2)
        why = "one rank per host";
    else if (rc == MPI_SUCCESS && sizes[0] == -sizes[1]) {
        why = "MPI_Comm_split for the hierarchical allreduce failed";
        if (hier && (rc = MPI_Comm_split(m->comm, me, rank, &m->cross)) != MPI_SUCCESS)
            m->cross = MPI_COMM_NULL;
        if (rc == MPI_SUCCESS) {
            MPI_Info info;
            MPI_Info_create(&info);
            MPI_Info_set(info, "alloc_shared_noncontig", "true");
            void *base = NULL;
            rc = MPI_Win_allocate_shared((MPI_Aint)cfg->shm_bytes, 1, info, node, &base,
                                         &m->win);
            MPI_Info_free(&info);
            if (rc != MPI_SUCCESS)
                m->win = MPI_WIN_NULL;
            why = "MPI_Win_allocate_shared failed";
        }
        if (rc == MPI_SUCCESS) {
            MPI_Win_lock_all(MPI_MODE_NOCHECK, m->win);
            void **regions = calloc((size_t)local, sizeof *regions);
            ok = regions != NULL;
            for (int r = 0; r < local && ok; r++) {
                MPI_Aint sz = 0;
                int disp = 0;
                ok = MPI_Win_shared_query(m->win, r, &sz, &disp, &regions[r]) == MPI_SUCCESS &&
                     sz >= (MPI_Aint)cfg->shm_bytes;
            }
            why = "MPI_Win_shared_query failed";
            if (ok) {
                herd_shm_params_t p = {.nranks = local, .me = me, .regions = regions,
                                       .region_bytes = (size_t)cfg->shm_bytes,
                                       .timeout_ms = cfg->stall_timeout_ms,
                                       .stream_stores = cfg->shm_stream_stores,
                                       .across = hier ? shm_across : NULL, .across_ctx = m};
                ok = herd__shm_attach(&m->shm, &p) == HERD_OK;
                why = herd__status_last();
            }
            free(regions);
        }
        rc = MPI_SUCCESS;
    }
    /* Every rank's control lines are set before any rank uses the plane. */
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, m->comm);
    if (rc != MPI_SUCCESS) {
        shm_close(m);
        return herd__ctrl_mpi_failed(rc, "MPI_Allreduce for the shared-memory plane");
    }
    if (!all) {
        if (rank == 0)
            HERD_LOG_INF("shared-memory plane off (%s): every collective over MPI",
                         ok ? "another rank could not start it" : why);
        shm_close(m);
        herd__status_clear();
        return HERD_OK;
    }
    m->shm_flat = !hier;
    if (rank == 0)
        HERD_LOG_INF("shared-memory plane on: %d local ranks, %lld bytes each%s", local,
                     (long long)cfg->shm_bytes,
                     hier ? ", hierarchical allreduce across hosts (other kinds over MPI)"
                          : ", allreduce, broadcast, allgather(v) and reducescatter");
    return HERD_OK;
}

static void mpi_destroy(herd_backend_t *be)
{
    mpi_backend_t *m = (mpi_backend_t *)be;
    shm_close(m);
    free(m->fusion);
    free(m->icounts);
    free(m->idispls);
    free(m->lcounts);
    free(m->ldispls);
    for (int h = 0; h < 2; h++)
        for (int op = 0; op < HERD_NUM_OPS; op++)
            if (m->half_ops[h][op] != MPI_OP_NULL)
                MPI_Op_free(&m->half_ops[h][op]);
    if (m->comm != MPI_COMM_NULL)
        MPI_Comm_free(&m->comm);
    free(m);
}

int herd__backend_mpi_create(herd_backend_t **out, const void *world, const herd_config_t *cfg)
{
    mpi_backend_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the MPI backend");
    m->base = (herd_backend_t){.name = "mpi", .allreduce = mpi_allreduce,
                               .broadcast = mpi_broadcast,
                               .allreduce_scaled = mpi_allreduce_scaled,
                               .allgather = mpi_allgather, .allgatherv = mpi_allgatherv,
                               .reducescatter = mpi_reducescatter, .alltoall = mpi_alltoall,
                               .alltoallv = mpi_alltoallv, .exchange = mpi_exchange,
                               .exchange_alltoall = mpi_exchange_alltoall, .agree = mpi_agree,
                               .copy = host_copy,
                               .fusion_buffer = host_fusion_buffer, .finish = host_finish,
                               .destroy = mpi_destroy};
    m->chunk_bytes = cfg->chunk_bytes;
    m->fusion_min = (size_t)herd__config_group_limit(cfg, 0);
    m->win = MPI_WIN_NULL;
    m->cross = MPI_COMM_NULL;
    m->node = MPI_COMM_NULL;
    m->close_timeout_ms = cfg->shutdown_timeout_ms;
    for (int h = 0; h < 2; h++)
        for (int op = 0; op < HERD_NUM_OPS; op++)
            m->half_ops[h][op] = MPI_OP_NULL;
    int rc = MPI_Comm_dup(*(const MPI_Comm *)world, &m->comm);
    if (rc != MPI_SUCCESS) {
        m->comm = MPI_COMM_NULL;
        mpi_destroy(&m->base);
        return herd__ctrl_mpi_failed(rc, "MPI_Comm_dup for the data plane");
    }
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_size(m->comm, &m->size);
    m->icounts = calloc(2 * (size_t)m->size, sizeof *m->icounts);
    m->idispls = calloc(2 * (size_t)m->size, sizeof *m->idispls);
    m->lcounts = calloc((size_t)m->size, sizeof *m->lcounts);
    m->ldispls = calloc((size_t)m->size, sizeof *m->ldispls);
    if (m->icounts == NULL || m->idispls == NULL || m->lcounts == NULL || m->ldispls == NULL) {
        mpi_destroy(&m->base);
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the MPI backend's counts");
    }
    MPI_User_function *fns[2][HERD_NUM_OPS] = {
        {fp16_sum, fp16_sum, fp16_min, fp16_max, fp16_prod},
        {bf16_sum, bf16_sum, bf16_min, bf16_max, bf16_prod}};
    for (int h = 0; h < 2; h++) {
        for (int op = 0; op < HERD_NUM_OPS; op++) {
            rc = MPI_Op_create(fns[h][op], 1, &m->half_ops[h][op]);
            if (rc != MPI_SUCCESS) {
                mpi_destroy(&m->base);
                return herd__ctrl_mpi_failed(rc, "MPI_Op_create");
            }
        }
    }
    rc = shm_open(m, cfg);
    if (rc != HERD_OK) {
        mpi_destroy(&m->base);
        return rc;
    }
    *out = &m->base;
    return HERD_OK;
}
