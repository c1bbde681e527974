/* fake_cuda.h - the controls of the fake CUDA runtime, driver and NCCL (fake_cuda.c). */
#ifndef HERD_FAKE_CUDA_H
#define HERD_FAKE_CUDA_H

/* Injects a failure into this process, from now on (0 turns it off): "fail_malloc_min_bytes"
 * (cudaMalloc of at least that many bytes fails), "fail_stream_wait" (cudaStreamWaitEvent
 * fails), "nccl_hang" (collectives never complete: their stream stays busy until
 * ncclCommAbort), "collective_delay_ms" (a collective's stream stays busy that long after it), "nccl_async_error" (ncclCommGetAsyncError reports ncclRemoteError). Returns 0,
 * or -1 for an unknown name. */
int herd_fake_cuda_inject(const char *what, long value);

/* 1 once ncclCommAbort was called in this process. */
int herd_fake_cuda_aborted(void);

/* 1 when the primary context of `device` was created (by cudaSetDevice or first use). */
int herd_fake_cuda_primary_active(int device);

/* The device of the calling thread's current context, -1 when none is current. */
int herd_fake_cuda_current_device(void);

/* How many streams cudaStreamCreate(WithFlags) made in this process. */
int herd_fake_cuda_streams_created(void);

/* cudaMallocs that fail_malloc_min_bytes has failed in this process so far. */
long herd_fake_cuda_malloc_refused(void);

/* Makes no context current on the calling thread (cuCtxSetCurrent(NULL)). */
void herd_fake_cuda_unbind(void);

#endif
