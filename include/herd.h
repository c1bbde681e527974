/*
 * herd.h - the one public header of libherd.
 *
 * Nothing outside this file is public: every other header under src/ is internal and may change
 * at any time. Unstable extras, if any, live in herd/experimental.h under a herd_x_ prefix.
 *
 * herd is the communication core of data-parallel training. A program hands herd named tensors
 * as their gradients become ready; a background coordinator thread agrees with every other rank
 * which tensors are ready everywhere, packs them into fused MPI collectives and completes a
 * handle that the caller polls or waits on.
 *
 * Only ctypes-safe types cross this boundary: int, int64_t, size_t, const char *, void *. No
 * struct is passed by value, no bool, no varargs, no long. Every function returns an int status
 * (0 OK, HERD_INPROGRESS only from herd_poll_handle, negative on error) unless it is a plain
 * query (herd_rank, herd_strerror, ...). After an error, herd_last_error() on the same thread
 * returns a message that names the tensor, the ranks and the values involved.
 *
 * Copyright 2026 The herd authors. SPDX-License-Identifier: MIT
 */
#ifndef HERD_H
#define HERD_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define HERD_API
#elif defined(__GNUC__) || defined(__clang__)
#define HERD_API __attribute__((visibility("default")))
#else
#define HERD_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header's ABI. herd_abi_version() returns the library's; they must match. */
#define HERD_ABI_VERSION 2
#define HERD_VERSION_MAJOR 0
#define HERD_VERSION_MINOR 2
#define HERD_VERSION_PATCH 0

/* A handle names one submitted operation. 0 is never a valid handle. Handles carry a generation
 * counter: a stale, forged or already-waited handle is refused with HERD_ERR_NOT_FOUND. */
typedef int64_t herd_handle_t;

/* Status codes. Values are pinned forever. */
enum {
    HERD_OK = 0,
    HERD_INPROGRESS = 1,         /* only from herd_poll_handle and herd_progress_handle */
    HERD_ERR_INVALID_ARG = -1,   /* a bad argument: NULL, negative count, unknown dtype/op... */
    HERD_ERR_INVALID_USAGE = -2, /* the right call at the wrong time: before init, duplicate... */
    HERD_ERR_NOT_FOUND = -3,     /* unknown, stale or already-waited handle */
    HERD_ERR_NOT_SUPPORTED = -4, /* e.g. a CUDA device in a build without GPU support */
    HERD_ERR_NO_MEMORY = -5,     /* an allocation or a fixed table ran out */
    HERD_ERR_BACKEND = -6,       /* MPI (or NCCL/CUDA) failed; its own text is in the message */
    HERD_ERR_MISMATCH = -7,      /* ranks disagree about a tensor's count, dtype, op or root */
    HERD_ERR_TIMEOUT = -8,       /* a wait's own timeout passed; the handle stays valid */
    HERD_ERR_SHUTDOWN = -9,      /* the operation was pending when herd shut down */
    HERD_ERR_INTERNAL = -10,     /* a bug in herd; please report it with the message */
    HERD_ERR_STALLED = -11       /* the operation itself timed out: some ranks never submitted
                                    it (HERD_STALL_TIMEOUT_SECONDS); the handle is released and
                                    the message names the tensor and the missing ranks */
};

/* Element types. Values are pinned forever. */
enum {
    HERD_UINT8 = 0,
    HERD_INT8 = 1,
    HERD_INT32 = 2,
    HERD_INT64 = 3,
    HERD_FLOAT16 = 4,  /* IEEE 754 binary16 */
    HERD_BFLOAT16 = 5, /* bfloat16 */
    HERD_FLOAT32 = 6,
    HERD_FLOAT64 = 7
};

/* Reduction operations. Values are pinned forever. */
enum {
    HERD_SUM = 0,
    HERD_AVERAGE = 1, /* sum, then divide by the number of ranks; integers truncate toward 0 */
    HERD_MIN = 2,
    HERD_MAX = 3,
    HERD_PRODUCT = 4
};

/* Where a buffer lives: host memory, or (>= 0) a CUDA device ordinal. */
enum { HERD_DEVICE_CPU = -1 };

/* Longest tensor name in bytes, not counting the terminating NUL. */
enum { HERD_MAX_NAME_LEN = 255 };

/*
 * Initialises herd: reads the HERD_* environment variables, initialises MPI if the program has
 * not (MPI_Init_thread with MPI_THREAD_MULTIPLE; herd then finalises it at shutdown), duplicates
 * MPI_COMM_WORLD for its own traffic and starts the coordinator thread. A bad HERD_* value fails
 * with HERD_ERR_INVALID_ARG and names the variable. Calling it again while initialised is
 * HERD_ERR_INVALID_USAGE. Every rank must call it.
 * Thread safety: call from one thread, the same one that later calls herd_shutdown.
 */
HERD_API int herd_init(void);

/*
 * Collective: returns once every rank has called it. Operations every rank submitted before
 * shutting down complete normally; operations some ranks never submitted fail with
 * HERD_ERR_SHUTDOWN and their waiters wake. Finalises MPI only if herd initialised it.
 * Idempotent: calling it when not initialised returns HERD_OK. Handles completed before the
 * shutdown can still be waited on afterwards.
 * Thread safety: call from the thread that called herd_init, with no other thread submitting.
 */
HERD_API int herd_shutdown(void);

/* 1 when initialised, else 0. Thread safety: any thread. */
HERD_API int herd_initialized(void);

/* This process's rank and the number of ranks in MPI_COMM_WORLD; -1 when not initialised.
 * Thread safety: any thread. */
HERD_API int herd_rank(void);
HERD_API int herd_size(void);

/* Rank and size among the ranks on this host (shared-memory node); -1 when not initialised.
 * Thread safety: any thread. */
HERD_API int herd_local_rank(void);
HERD_API int herd_local_size(void);

/*
 * Declares a tensor name ahead of its first use and returns its key (a small non-negative
 * integer, local to this process). Declaring is optional: push_pull and broadcast declare the
 * names they meet. Declaration order is priority: when several tensors are ready at once, those
 * declared earlier are reduced first. Ranks should declare in the same order (a framework's
 * parameter order); where they differ, rank 0's order decides. Declaring a name twice returns
 * the same key.
 * Thread safety: any thread.
 */
HERD_API int herd_declare_tensor(const char *name, int64_t *key_out);

/*
 * Allreduce: combines `count` elements of `dtype` from every rank with `op` and writes the result
 * to `recvbuf` on every rank. `sendbuf == recvbuf` reduces in place; out of place, `sendbuf` is
 * only read, never written. Every rank must submit the same name with the same count, dtype and
 * op; a disagreement completes the operation with HERD_ERR_MISMATCH on every rank.
 * `count` may be 0 (buffers may then be NULL). Buffers must be aligned for their dtype.
 * Ownership: both buffers stay owned by the caller, and must stay valid (and `sendbuf`
 * unmodified) until the handle completes. The same name may not be submitted again on this rank
 * while a previous submission of it is in flight (HERD_ERR_INVALID_USAGE).
 * `device` is HERD_DEVICE_CPU, or a CUDA ordinal for device memory (see herd_set_cuda_stream;
 * HERD_ERR_NOT_SUPPORTED without GPU support or without a visible device). A pointer on the
 * other side of what `device` says is HERD_ERR_INVALID_ARG.
 * Thread safety: any thread, concurrently with other submissions and waits.
 */
HERD_API int herd_push_pull(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                            int dtype, int op, int device, herd_handle_t *handle_out);

/*
 * Broadcast: copies `count` elements of `dtype` from `buf` on rank `root` into `buf` on every
 * other rank. Every rank must agree on name, count, dtype and root (else HERD_ERR_MISMATCH on
 * every rank). Ownership: `buf` stays the caller's and must stay valid, and on the root
 * unmodified, until the handle completes.
 * Thread safety: any thread, concurrently with other submissions and waits.
 */
HERD_API int herd_broadcast(const char *name, void *buf, int64_t count, int dtype, int root,
                            int device, herd_handle_t *handle_out);

/*
 * Allreduce with scaling: like herd_push_pull, but each rank's input is multiplied by
 * `prescale` before the reduction and the result by `postscale` after it (1.0 and 1.0 make it
 * herd_push_pull). Scaling computes in the dtype's working precision (float32 for float32,
 * float16 and bfloat16; float64 for float64); integers are scaled in float64 and truncated
 * toward zero. The input is never written out of place: prescaling happens on the way into the
 * collective. With HERD_AVERAGE the division by the number of ranks comes before postscale.
 * Scale factors are not checked across ranks. GPU memory: floating-point SUM and AVERAGE
 * only, through NCCL's PreMulSum, which folds both factors (and AVERAGE's division) into one
 * multiplication of each rank's input (HERD_ERR_NOT_SUPPORTED otherwise; docs/collectives.md).
 * Ownership and thread safety: as herd_push_pull.
 */
HERD_API int herd_push_pull_scaled(const char *name, const void *sendbuf, void *recvbuf,
                                   int64_t count, int dtype, int op, double prescale,
                                   double postscale, int device, herd_handle_t *handle_out);

/*
 * Allgather: every rank contributes `count` elements of `sendbuf`; `recvbuf` (count * size
 * elements) receives every rank's contribution in rank order on every rank. Every rank must
 * submit the same name, count and dtype (else HERD_ERR_MISMATCH on every rank). Several ready
 * allgathers of one dtype are fused into one collective. `sendbuf` is only read.
 * Ownership: both buffers stay the caller's; valid (and sendbuf unmodified) until the handle
 * completes. Thread safety: any thread.
 */
HERD_API int herd_allgather(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                            int dtype, int device, herd_handle_t *handle_out);

/*
 * Allgather of different counts per rank (MPI_Allgatherv, Horovod's allgather of tensors whose
 * first dimension differs). Each rank contributes `count` elements, a multiple of `row` (the
 * elements per row, e.g. the product of a tensor's trailing dimensions), which must agree across
 * ranks with dtype and name; counts are exchanged, not checked.
 * When the handle completes with HERD_OK, herd has written:
 *   counts_out[r]  (the caller's array of herd_size() entries): rank r's count, for every r;
 *   *recvbuf_out   a buffer herd allocated holding every rank's elements in rank order (the sum
 *                  of counts_out); NULL when that sum is 0. It belongs to the caller from then on
 *                  and must be released with herd_free(ptr, device). Host buffers are 64-byte
 *                  aligned; GPU buffers are memory of `device`.
 * Both out-pointers are the caller's and must stay valid until the handle completes; herd writes
 * nothing to them when the operation fails before it is issued (for GPU memory, a failure the
 * device reports later may leave *recvbuf_out set: release it with herd_free too).
 * Ownership of sendbuf: as herd_allgather.
 * Thread safety: any thread.
 */
HERD_API int herd_allgatherv(const char *name, const void *sendbuf, int64_t count, int64_t row,
                             int dtype, int device, void **recvbuf_out, int64_t *counts_out,
                             herd_handle_t *handle_out);

/*
 * Reduce-scatter (equal parts): `sendbuf` holds recvcount * size elements; rank r receives in
 * `recvbuf` (recvcount elements) the reduction with `op` over ranks of elements
 * [r * recvcount, (r + 1) * recvcount). Name, count, dtype and op must agree across ranks.
 * Several ready reduce-scatters of one dtype and op fuse into one collective.
 * Ownership: as herd_push_pull (never in place: sendbuf and recvbuf must not overlap).
 * Thread safety: any thread.
 */
HERD_API int herd_reducescatter(const char *name, const void *sendbuf, void *recvbuf,
                                int64_t recvcount, int dtype, int op, int device,
                                herd_handle_t *handle_out);

/*
 * Reduce-scatter of `rows` rows of `row` elements each (sendbuf: rows * row elements) whose row
 * count need not divide by the number of ranks, split as Horovod splits a tensor's first
 * dimension: rank r receives herd_reducescatter_rows(rows, size, r) rows, the first rows % size
 * ranks one row more than the others, in rank order. `recvbuf` holds that many rows.
 * Name, rows, row, dtype and op must agree across ranks. Ownership: as herd_reducescatter.
 * Thread safety: any thread.
 */
HERD_API int herd_reducescatterv(const char *name, const void *sendbuf, void *recvbuf,
                                 int64_t rows, int64_t row, int dtype, int op, int device,
                                 herd_handle_t *handle_out);

/* The rows rank `rank` receives from herd_reducescatterv of `rows` rows over `size` ranks:
 * rows / size, plus one for the first rows % size ranks. -1 for a bad argument.
 * Thread safety: any thread. */
HERD_API int64_t herd_reducescatter_rows(int64_t rows, int size, int rank);

/*
 * All-to-all (equal parts): `sendbuf` holds size blocks of `count_per_rank` elements, block r
 * for rank r; `recvbuf` (the same size) receives block r from rank r. Name, count and dtype must
 * agree across ranks. Ownership: as herd_push_pull (never in place). Thread safety: any thread.
 */
HERD_API int herd_alltoall(const char *name, const void *sendbuf, void *recvbuf,
                           int64_t count_per_rank, int dtype, int device,
                           herd_handle_t *handle_out);

/*
 * All-to-all with a count per destination (MPI_Alltoallv, Horovod's alltoall with splits):
 * `sendbuf` holds sendcounts[0] elements for rank 0, then sendcounts[1] for rank 1, ...
 * (`sendcounts`: herd_size() entries, each a multiple of `row`, which must agree across ranks
 * with dtype and name). When the handle completes with HERD_OK, herd has written
 * recvcounts_out[r] (caller's array of herd_size() entries: what rank r sent to this rank) and
 * *recvbuf_out, a buffer herd allocated with those elements in rank order (NULL when they sum
 * to 0), which the caller owns from then on and releases with herd_free(ptr, device).
 * `sendbuf`, `sendcounts` and both out-pointers stay the caller's and must stay valid (and the
 * inputs unmodified) until the handle completes. Thread safety: any thread.
 */
HERD_API int herd_alltoallv(const char *name, const void *sendbuf, const int64_t *sendcounts,
                            int64_t row, int dtype, int device, void **recvbuf_out,
                            int64_t *recvcounts_out, herd_handle_t *handle_out);

/*
 * Barrier: completes once every rank has submitted a barrier of this name (any name, the same
 * on every rank). Host-side; no data. Thread safety: any thread.
 */
HERD_API int herd_barrier(const char *name, herd_handle_t *handle_out);

/*
 * Join, for uneven data: a rank that has run out of data calls herd_join and from then on takes
 * part in every operation the other ranks still submit, without submitting them itself:
 * allreduce with the op's identity (0 for SUM and AVERAGE, 1 for PRODUCT, the dtype's largest
 * value for MIN and smallest for MAX; AVERAGE divides by the number of ranks that have not
 * joined), allgather and alltoall with zeros (equal forms) or nothing (variable forms),
 * reduce-scatter with the identity (its own part is discarded), broadcast as a receiver
 * (a broadcast whose root has joined fails on every rank with HERD_ERR_INVALID_USAGE), barrier.
 * The join completes on every rank once every rank has joined; *last_rank_out (the caller's
 * int, valid until the handle completes, like a buffer) then holds the last rank to join (the
 * highest of those that joined in the same negotiation round). herd is then ready for the next
 * epoch.
 * Rules: a rank may call herd_join only with no other operation of its own in flight
 * (HERD_ERR_INVALID_USAGE otherwise), and submits nothing until its join completes. GPU
 * operations cannot run while a rank is joined (they fail with HERD_ERR_NOT_SUPPORTED on every
 * rank). `device` is where the caller's data would live (HERD_DEVICE_CPU or a CUDA ordinal); it
 * is recorded, not used, since join is host-side.
 * Thread safety: any thread; not inside herd_group_start/herd_group_end.
 */
HERD_API int herd_join(int device, int *last_rank_out, herd_handle_t *handle_out);

/*
 * Groups, like ncclGroupStart/ncclGroupEnd: submissions on this thread between herd_group_start
 * and the matching herd_group_end are handed to herd together at herd_group_end, so every rank
 * negotiates them as one unit (all become ready in the same round, or none) and fuses them
 * where their kinds allow. Each submission still returns its own handle at once. Groups nest;
 * only the outermost end submits. If a submission inside the group fails, herd_group_end
 * submits none of the group: it completes every handle of the group with
 * HERD_ERR_INVALID_USAGE (naming the failed member) and returns HERD_ERR_INVALID_USAGE.
 * herd_group_end without herd_group_start is HERD_ERR_INVALID_USAGE. herd_join may not be grouped.
 * Thread safety: per thread.
 */
HERD_API int herd_group_start(void);
HERD_API int herd_group_end(void);

/*
 * Releases a buffer herd allocated for a variable-size result (herd_allgatherv,
 * herd_alltoallv). `device` is the one the operation was submitted with. NULL is ignored.
 * Thread safety: any thread.
 */
HERD_API int herd_free(void *ptr, int device);

/*
 * Returns HERD_INPROGRESS while the operation runs, then its final status (HERD_OK or an error).
 * Never blocks and never releases the handle: wait on it once to release it.
 * Thread safety: any thread; lock-free.
 */
HERD_API int herd_poll_handle(herd_handle_t handle);

/*
 * Blocks until the operation completes or `timeout_ms` passes (-1 waits forever, 0 only checks),
 * sleeping on a condition variable. On completion returns the operation's status and releases
 * the handle: waiting on it again is HERD_ERR_NOT_FOUND. When the wait's own timeout passes it
 * returns HERD_ERR_TIMEOUT and the handle stays valid (herd_poll_handle still says
 * HERD_INPROGRESS) and may be waited on again. An operation that itself timed out (the stall
 * inspector, HERD_STALL_TIMEOUT_SECONDS) completes with HERD_ERR_STALLED: released, and its
 * message names the tensor and the ranks that never submitted it. Only HERD_ERR_TIMEOUT leaves
 * the handle live.
 * A wait without a deadline (-1) may run the rounds its operation needs on the calling thread.
 * Thread safety: any thread; two threads waiting on one handle get it once, the other
 * HERD_ERR_NOT_FOUND.
 */
HERD_API int herd_wait_handle(herd_handle_t handle, int64_t timeout_ms);

/*
 * herd_wait_handle(handle, -1) cut into slices, for callers that must stay responsive (Python
 * handles Ctrl-C between slices): like a wait without deadline it may run the rounds its
 * operation needs on the calling thread, then sleeps at most `slice_ms` for the rest. Returns
 * HERD_INPROGRESS when the slice ended first (the handle stays valid: call again), else the
 * operation's final status, releasing the handle as herd_wait_handle does. A round this thread
 * started is always finished first: if a peer stops answering inside one, this blocks like
 * herd_wait_handle(handle, -1) (use herd_wait_handle with a deadline where that matters).
 * Thread safety: as herd_wait_handle.
 */
HERD_API int herd_progress_handle(herd_handle_t handle, int64_t slice_ms);

/*
 * herd_push_pull, then herd_progress_handle(*handle_out, slice_ms) on the handle it made, in one
 * call: the synchronous reduction of a caller whose every call costs (Python through ctypes).
 * Returns a submission error (no handle was made), or the operation's final status (the handle
 * is released), or HERD_INPROGRESS when the slice ended first: *handle_out is then live, to be
 * driven on with herd_progress_handle or waited on.
 * Thread safety: as herd_push_pull.
 */
HERD_API int herd_push_pull_sync(const char *name, const void *sendbuf, void *recvbuf,
                                 int64_t count, int dtype, int op, int device, int64_t slice_ms,
                                 herd_handle_t *handle_out);

/* A constant sentence describing a status code ("unknown status" for others).
 * Thread safety: any thread. */
HERD_API const char *herd_strerror(int status);

/* The status code's name, e.g. "HERD_ERR_MISMATCH". Thread safety: any thread. */
HERD_API const char *herd_status_name(int status);

/* The message of the last error on this thread ("" if none). Valid until the thread's next herd
 * call. Thread safety: per thread. */
HERD_API const char *herd_last_error(void);

/* HERD_ABI_VERSION of the built library. Thread safety: any thread. */
HERD_API int herd_abi_version(void);

/* The release version as "MAJOR.MINOR.PATCH". Thread safety: any thread. */
HERD_API const char *herd_version(void);

/*
 * GPU memory (builds with the CUDA toolkit): `device` >= 0 in herd_push_pull/herd_broadcast is a
 * CUDA ordinal and the buffers are that device's memory. Sets the CUDA stream (a cudaStream_t,
 * passed as void *) that produced the data of this thread's next GPU submissions; NULL means the
 * legacy default stream. herd records an event on it at submit and reads the data only after
 * that event, so the caller never synchronizes before submitting.
 * Thread safety: per thread.
 */
HERD_API int herd_set_cuda_stream(void *stream);

/*
 * Makes `stream` (a cudaStream_t) wait, on the device, for the GPU operation behind `handle` to
 * complete, without blocking the host beyond the time herd needs to negotiate and issue it. Does
 * not release the handle: wait on (or poll) it as usual. HERD_ERR_INVALID_ARG for a host op,
 * HERD_ERR_NOT_SUPPORTED in a build without GPU support.
 * Thread safety: any thread.
 */
HERD_API int herd_handle_stream_wait(herd_handle_t handle, void *stream);

/*
 * Event counters since herd_init in this process, for finding where time goes: "ops" (operations
 * completed), "rounds", "rounds_idle" (rounds that completed nothing), "rounds_on_caller" (run by
 * a thread that drove its own wait), "rounds_patient" (negotiated without holding a core),
 * "wakes_sent", "wakes_live", "wakes_stale", "drives", "drive_busy", "handoffs" (waits that
 * slept while their op was in flight), "coordinator_signals", "coordinator_timeouts".
 * docs/performance.md explains each.
 * herd_counter writes the value of counter `name`; HERD_ERR_INVALID_ARG for an unknown name.
 * herd_counter_name(i) is the i-th name for i = 0, 1, ... and NULL past the last.
 * Thread safety: any thread; values are read without synchronizing with other threads.
 */
HERD_API int herd_counter(const char *name, int64_t *value_out);
HERD_API const char *herd_counter_name(int index);

/* Bytes per element of `dtype`, or HERD_ERR_INVALID_ARG for an unknown dtype.
 * Thread safety: any thread. */
HERD_API int herd_dtype_size(int dtype);

#ifdef __cplusplus
}
#endif

#endif /* HERD_H */
