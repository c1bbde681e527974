/* ctrl.h - the MPI control plane: who owns MPI, herd's duplicated communicator, the small
 * collectives of a negotiation round, and the wake messages that start a round on idle ranks.
 * No MPI type appears here: only ctrl.c and backend/mpi.c include mpi.h.
 *
 * Threads: herd__ctrl_open and herd__ctrl_finalize_mpi run on the application thread that calls
 * herd_init/herd_shutdown; everything else only under the coordinator's progress lock.
 */
#ifndef HERD_CTRL_H
#define HERD_CTRL_H

#include <stddef.h>
#include <stdint.h>

typedef struct herd_ctrl herd_ctrl_t;

/* Initialises MPI if needed (remembering that herd owns it), duplicates MPI_COMM_WORLD and learns
 * rank, size and the local (shared-memory node) rank and size. With `shm_wakes` set on every
 * rank and every rank on one host, wakes are stores to a shared window instead of messages.
 * Collective. On failure sets the last error and leaves MPI as it found it where it can. */
int herd__ctrl_open(herd_ctrl_t **out, int shm_wakes);

/* Frees herd's communicators (coordinator, after the last round). */
void herd__ctrl_close(herd_ctrl_t *c);

/* Frees `c` (application thread, after the coordinator has exited), finalising MPI if herd
 * initialised it and `finalize` is set. A failed herd_init passes 0: MPI stays up, still herd's,
 * so a corrected retry works; herd__ctrl_finalize_leftover ends it at exit. */
void herd__ctrl_release(herd_ctrl_t *c, int finalize);

/* At process exit: finalises MPI if herd initialised it and no herd_shutdown did. */
void herd__ctrl_finalize_leftover(void);

/* Records an MPI error code as HERD_ERR_BACKEND with MPI's own text: "<what> failed: <text>".
 * Shared with backend/mpi.c, the other file that speaks MPI. */
int herd__ctrl_mpi_failed(int mpi_rc, const char *what);

int herd__ctrl_rank(const herd_ctrl_t *c);
int herd__ctrl_size(const herd_ctrl_t *c);
int herd__ctrl_local_rank(const herd_ctrl_t *c);
int herd__ctrl_local_size(const herd_ctrl_t *c);

/* A pointer to the MPI_Comm that the MPI data plane duplicates for its own traffic. */
const void *herd__ctrl_world(const herd_ctrl_t *c);

/* In-place bitwise-AND allreduce of `n` words. */
int herd__ctrl_allreduce_band(herd_ctrl_t *c, uint64_t *words, int64_t n);
/* The same as a nonblocking MPI_Iallreduce, waited for without holding a core: polls for
 * `spin_ns`, then sleeps between polls, backing off from a few microseconds to a fraction of a
 * millisecond. Every rank must use the same one of the two for the same round (MPI does not
 * match blocking and nonblocking collectives). */
int herd__ctrl_allreduce_band_patient(herd_ctrl_t *c, uint64_t *words, int64_t n,
                                      int64_t spin_ns);

/* Broadcasts `bytes` bytes of buf from `root`. */
int herd__ctrl_bcast(herd_ctrl_t *c, void *buf, size_t bytes, int root);

/* Gathers every rank's bytes. On return blobs[r], lens[r] describe rank r's contribution; they
 * stay valid until the next call. */
int herd__ctrl_allgather(herd_ctrl_t *c, const char *mine, size_t len, const char *const **blobs,
                         const size_t **lens);

/* Makes room for `bytes` of gathered messages in all, so that gathers up to that size (the stall
 * inspector's, sized by the slots) never allocate. HERD_OK or HERD_ERR_NO_MEMORY. */
int herd__ctrl_allgather_reserve(herd_ctrl_t *c, size_t bytes);

/* Tells every other rank to start round `epoch`. */
int herd__ctrl_wake_others(herd_ctrl_t *c, int64_t epoch);

/* 1 if another rank asked for round `epoch` (stale asks for earlier rounds are dropped), else 0;
 * negative on an MPI failure. Never blocks. */
int herd__ctrl_wake_poll(herd_ctrl_t *c, int64_t epoch);

/* Collective, at shutdown: receives every wake message still in flight so none is left
 * unmatched, then cancels the standing receive (or frees the shared wake window). */
int herd__ctrl_quiesce(herd_ctrl_t *c);

#endif
