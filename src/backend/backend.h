/* backend/backend.h - the data plane behind one small vtable: the MPI backend (host memory) now,
 * NCCL (GPU memory) later. Backends run on the coordinator thread only. Errors are returned as
 * herd status with the backend's own text in this thread's last error. */
#ifndef HERD_BACKEND_H
#define HERD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct herd_backend herd_backend_t;

/* How a reduction's input and result are scaled (herd_push_pull_scaled, AVERAGE): the input is
 * multiplied by `pre` on its way in (never written out of place), the result divided by
 * `divisor` (1: not) and multiplied by `post`. */
typedef struct herd_scale {
    double pre, post;
    int divisor;
} herd_scale_t;

struct herd_backend {
    const char *name;
    /* recv[i] = op over ranks of send[i], for count elements. send == recv reduces in place.
     * HERD_AVERAGE divides by the number of ranks (integers truncate toward zero). */
    int (*allreduce)(herd_backend_t *be, const void *send, void *recv, int64_t count, int dtype,
                     int op);
    /* buf on every rank = buf on root. */
    int (*broadcast)(herd_backend_t *be, void *buf, int64_t count, int dtype, int root);
    /* Optional (NULL: not supported by this data plane). Counts are elements; every array of
     * counts or displacements has one entry per rank and is the same on every rank unless
     * said otherwise. Host memory only for now.
     * allreduce with scaling: `op` is SUM, MIN, MAX or PRODUCT (AVERAGE comes as SUM with a
     * divisor). */
    int (*allreduce_scaled)(herd_backend_t *be, const void *send, void *recv, int64_t count,
                            int dtype, int op, const herd_scale_t *scale);
    /* recv = every rank's `count` elements in rank order. */
    int (*allgather)(herd_backend_t *be, const void *send, void *recv, int64_t count, int dtype);
    /* recv = counts[r] elements of rank r at displs[r], for every r; send has counts[me]. */
    int (*allgatherv)(herd_backend_t *be, const void *send, void *recv, const int64_t *counts,
                      const int64_t *displs, int dtype);
    /* recv (counts[me] elements) = op over ranks of send[displ(me) .. + counts[me]), where
     * send holds every rank's part in rank order. op: SUM, MIN, MAX, PRODUCT. */
    int (*reducescatter)(herd_backend_t *be, const void *send, void *recv, const int64_t *counts,
                         int dtype, int op);
    /* Block r of send (count elements) goes to rank r; block r of recv comes from rank r. */
    int (*alltoall)(herd_backend_t *be, const void *send, void *recv, int64_t count, int dtype);
    /* Per-rank counts and displacements, this rank's own (not the same on every rank). */
    int (*alltoallv)(herd_backend_t *be, const void *send, const int64_t *sendcounts,
                     const int64_t *sdispls, void *recv, const int64_t *recvcounts,
                     const int64_t *rdispls, int dtype);
    /* Small host-side exchanges the variable-size kinds need: all[r * n + i] = rank r's mine[i];
     * recv[r] = what rank r had in send[me]; *worst = the lowest of every rank's status
     * (HERD_OK when all are; errors are negative), so every rank fails alike. */
    int (*exchange)(herd_backend_t *be, const int64_t *mine, int64_t n, int64_t *all);
    int (*exchange_alltoall)(herd_backend_t *be, const int64_t *send, int64_t *recv);
    int (*agree)(herd_backend_t *be, int status, int *worst);
    /* Optional (NULL: host memory from posix_memalign): a buffer of `bytes` in the backend's
     * memory for a variable-size result, the caller's to release with herd_free; `send_bytes`
     * is this rank's input, so a staging plane can make room for both. NULL with this thread's
     * error set on failure. */
    void *(*alloc_result)(herd_backend_t *be, size_t bytes, size_t send_bytes);
    /* Copies n bytes within the backend's memory, ordered before its next collective. */
    void (*copy)(void *be, void *dst, const void *src, size_t n);
    /* A fusion buffer of at least `bytes`, owned by the backend; grows only when a larger group
     * first appears. */
    int (*fusion_buffer)(herd_backend_t *be, size_t bytes, void **out);
    /* Returns once everything issued so far is complete in memory (nothing on the host, where
     * collectives are synchronous; on a GPU a bounded poll, used for a group that failed). */
    int (*finish)(herd_backend_t *be);
    /* Optional (NULL on the host): around each group, given its ops' handle-slot indices:
     * order herd's work after the producers' streams, and mark the ops issued. before_group is
     * collective (every rank calls it for the group, even with a failed `local_status`): it
     * prepares the group (`bytes` in all, `fused` into the fusion buffer) and the ranks agree
     * that every one did, so a group that failed anywhere is issued nowhere. *scaled says
     * whether this rank scales a member (prescale/postscale) and comes back 1 when any rank
     * does, so that every rank takes the scaled path for the group alike. */
    int (*before_group)(herd_backend_t *be, const uint32_t *ops, int64_t n, int64_t bytes,
                        int fused, int local_status, int *scaled);
    int (*after_group)(herd_backend_t *be, const uint32_t *ops, int64_t n);
    /* Optional (NULL on the host): once a group is issued (after_group returned HERD_OK), its
     * ops complete when the device does, not by `finish`: the coordinator polls each op, in
     * issue order, without blocking. HERD_INPROGRESS while the device still works on it, else its
     * final status (an error with the message set). */
    int (*poll_op)(herd_backend_t *be, uint32_t op);
    void (*destroy)(herd_backend_t *be);
};

/* The MPI backend over a duplicate of *world (an MPI_Comm). cfg->chunk_bytes > 0 splits a
 * collective into pieces of at most that many bytes; 0 sends each in one call (pieces are still
 * cut at INT_MAX elements, MPI's count limit). When every rank is on one host and cfg->shm is
 * set, allreduce, broadcast, allgather(v) and reducescatter run on the shared-memory plane
 * (backend/shm.h) instead, above sizes measured per kind, in a segment of cfg->shm_bytes per
 * rank (there the int count limit does not apply). Collective over *world; called on the application thread during
 * init. */
int herd__backend_mpi_create(herd_backend_t **out, const void *world, const herd_config_t *cfg);

#endif
