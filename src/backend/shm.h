/* backend/shm.h - the intra-node shared-memory data plane for host tensors: allreduce (and, when
 * every rank is on this host, broadcast, allgather(v) and reducescatter) among the ranks of one
 * host, moving the bytes itself through a segment every local rank maps.
 *
 * The plane knows nothing of MPI: it is given each local rank's region of a shared segment (the
 * MPI backend gets one from MPI_Win_allocate_shared) and synchronises through counters in those
 * regions. It runs on the coordinator thread only; every local rank must call it for the same
 * collectives in the same order, as for MPI. See shm.c for the protocol. */
#ifndef HERD_BACKEND_SHM_H
#define HERD_BACKEND_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

typedef struct herd_shm herd_shm_t;

/* Bytes of one rank's region for a plane moving data in pipeline chunks of up to
 * `region_bytes` in all (control lines, then two data buffers); the smallest region accepted. */
enum { HERD_SHM_MIN_REGION = 16384 };

typedef struct herd_shm_params {
    int nranks, me;        /* local ranks, and this one */
    void *const *regions;  /* regions[r]: rank r's region as mapped in this process */
    size_t region_bytes;   /* bytes of every region (the same on every rank) */
    int64_t timeout_ms;    /* a wait for a peer gives up after this long (0: never) */
    /* How chunked allreduces (above the whole-tensor size) store into the segment: 0 regular
     * stores; 1 streaming (non-temporal) stores; 2 regular below 256 KiB, and from there
     * both measured per size class, the faster used. Streaming needs x86-64; elsewhere every
     * value means regular stores. */
    int stream_stores;
    /* Optional (NULL: the local ranks are all there is): combines, in place, a part this rank
     * has reduced over its host with the same part of the other hosts (a hierarchical
     * allreduce), before the divisor and postscale are applied. Called by every local rank for
     * the same parts in the same order; the same on every host. HERD_OK or an error status
     * with the message set. */
    int (*across)(void *ctx, void *buf, int64_t count, int dtype, int op);
    void *across_ctx;
} herd_shm_params_t;

/* Attaches to the regions and initialises this rank's own control lines. The caller must make
 * every rank attach (a barrier) before any rank runs a collective. No collective inside. */
int herd__shm_attach(herd_shm_t **out, const herd_shm_params_t *p);

/* recv = op over the local ranks of send*pre, divided by scale->divisor (1: not) and multiplied
 * by scale->post, exactly as the MPI backend computes it: fp16 and bf16 combine pairwise in
 * float32 and round to nearest even; integer division truncates. `op` is SUM, MIN, MAX or
 * PRODUCT. send == recv reduces in place. Any count: large ones travel in pipelined chunks.
 * A peer that does not come within the timeout, or whose process has exited, fails this call
 * with HERD_ERR_TIMEOUT or HERD_ERR_BACKEND and the plane refuses every later call. */
int herd__shm_allreduce(herd_shm_t *s, const void *send, void *recv, int64_t count, int dtype,
                        int op, const herd_scale_t *scale);

/* The copy and reduce-scatter collectives below run on a flat plane only (no `across`: every
 * rank on this host), travel in pipelined chunks through the same buffers and counters as
 * allreduce, and fail and refuse alike. Counts and displacements have one entry per local rank
 * and are the same on every rank.
 *
 * buf on every rank = buf on `root`: `bytes` bytes. */
int herd__shm_broadcast(herd_shm_t *s, void *buf, int64_t bytes, int root);

/* recv = counts[q] elements of rank q at element displs[q], for every q, from each rank's
 * send (counts[me] elements of esize bytes). send may be recv + displs[me] (in place). */
int herd__shm_allgather(herd_shm_t *s, const void *send, void *recv, const int64_t *counts,
                        const int64_t *displs, size_t esize);

/* recv (counts[me] elements) = op over the local ranks of part `me` of send, where send holds
 * every rank's part in rank order (counts[0] elements, then counts[1], ...). `op` is SUM, MIN,
 * MAX or PRODUCT (AVERAGE reduces as SUM: the caller divides); computed as allreduce computes
 * it, contributions combined in rank order. send and recv must not overlap. */
int herd__shm_reducescatter(herd_shm_t *s, const void *send, void *recv, const int64_t *counts,
                            int dtype, int op);

/* Detaches (the segment itself belongs to the caller). NULL is fine. */
void herd__shm_detach(herd_shm_t *s);

#endif
