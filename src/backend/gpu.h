/* backend/gpu.h - GPU memory: what the API layer needs at submit (pointer checks, the producer
 * stream's ready event) and the GPU data plane (NCCL, or staging through pinned host memory and
 * MPI). Built from gpu_cuda.c with the CUDA toolkit, else from gpu_none.c, where every GPU
 * request is HERD_ERR_NOT_SUPPORTED. No CUDA type crosses this header.
 */
#ifndef HERD_BACKEND_GPU_H
#define HERD_BACKEND_GPU_H

#include <stdint.h>

#include "backend/backend.h"
#include "config.h"
#include "ctrl.h"

/* Prepares per-operation events for `capacity` handle slots (lazily created). */
int herd__gpu_init(uint32_t capacity);
void herd__gpu_fini(void);

/* Checks that `buf` lives where `device` says: host memory for HERD_DEVICE_CPU, memory of CUDA
 * device `device` otherwise. HERD_ERR_NOT_SUPPORTED for a GPU request without GPU support or
 * without a visible device; HERD_ERR_INVALID_ARG for a pointer on the wrong side. */
int herd__gpu_check_buffer(const char *name, const char *what, const void *buf, int device);

/* At submit of a GPU op in handle slot `index`: records an event on `stream` (the producer's
 * cudaStream_t; NULL = the legacy default stream) that herd's stream waits on before it reads
 * the data, so the caller never synchronizes first. */
int herd__gpu_record_ready(uint32_t index, int device, void *stream);

/* Makes `stream` wait, on the device, for the GPU op in slot `index` to complete. Returns
 * HERD_INPROGRESS while herd has not issued the op yet (the caller retries), HERD_OK once the
 * wait is enqueued. */
int herd__gpu_stream_wait(uint32_t index, void *stream);

/* Releases device memory herd allocated for a variable-size result (herd_free). */
int herd__gpu_free(void *ptr, int device);

/* Creates the GPU data plane for CUDA device `device`: collective (every rank calls it in the
 * same round), NCCL communicators bootstrapped over `ctrl`, or with HERD_GPU_BACKEND=mpi (or no
 * NCCL) staging through pinned host memory and `host`. */
int herd__gpu_backend_create(herd_backend_t **out, herd_ctrl_t *ctrl, const herd_config_t *cfg,
                             int device, herd_backend_t *host);

#endif
