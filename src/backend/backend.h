/* backend/backend.h - the data plane behind one small vtable: the MPI backend (host memory) now,
 * NCCL (GPU memory) later. Backends run on the coordinator thread only. Errors are returned as
 * herd status with the backend's own text in this thread's last error. */
#ifndef HERD_BACKEND_H
#define HERD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct herd_backend herd_backend_t;

struct herd_backend {
    const char *name;
    /* recv[i] = op over ranks of send[i], for count elements. send == recv reduces in place.
     * HERD_AVERAGE divides by the number of ranks (integers truncate toward zero). */
    int (*allreduce)(herd_backend_t *be, const void *send, void *recv, int64_t count, int dtype,
                     int op);
    /* buf on every rank = buf on root. */
    int (*broadcast)(herd_backend_t *be, void *buf, int64_t count, int dtype, int root);
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
     * that every one did, so a group that failed anywhere is issued nowhere. */
    int (*before_group)(herd_backend_t *be, const uint32_t *ops, int64_t n, int64_t bytes,
                        int fused, int local_status);
    int (*after_group)(herd_backend_t *be, const uint32_t *ops, int64_t n);
    /* Optional (NULL on the host): once a group is issued (after_group returned HERD_OK), its
     * ops complete when the device does, not by `finish`: the coordinator polls each op, in
     * issue order, without blocking. HERD_INPROGRESS while the device still works on it, else its
     * final status (an error with the message set). */
    int (*poll_op)(herd_backend_t *be, uint32_t op);
    void (*destroy)(herd_backend_t *be);
};

/* The MPI backend over a duplicate of *world (an MPI_Comm). `chunk_bytes` > 0 splits a
 * collective into pieces of at most that many bytes; 0 sends each in one call (pieces are still
 * cut at INT_MAX elements, MPI's count limit). Called on the application thread during init. */
int herd__backend_mpi_create(herd_backend_t **out, const void *world, int64_t chunk_bytes);

#endif
