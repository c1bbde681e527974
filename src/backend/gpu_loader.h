/* backend/gpu_loader.h - the CUDA runtime, the CUDA driver and NCCL, reached only through
 * dlopen(RTLD_LOCAL) and dlsym on first GPU use ([D2], [P6]).
 *
 * libherd has no link-time dependency on libcudart or libnccl: Python loads libherd with
 * RTLD_GLOBAL, and a DT_NEEDED on libnccl.so.2 would make whichever NCCL the loader finds first
 * the process's NCCL, breaking a framework that needs its own newer one. dlopen of a soname that
 * is already loaded returns that copy, so herd shares the framework's cudart and NCCL when the
 * framework came first; RTLD_LOCAL keeps herd's copy out of the global namespace when herd came
 * first.
 *
 * Only the types of cuda.h, cuda_runtime_api.h and nccl.h are used; every call goes through the
 * tables below. HERD_CUDART_LIBRARY, HERD_CUDA_DRIVER_LIBRARY and HERD_NCCL_LIBRARY name other
 * files to load (the tests point them at a fake built from tests/gpu/fake_cuda.c).
 */
#ifndef HERD_BACKEND_GPU_LOADER_H
#define HERD_BACKEND_GPU_LOADER_H

#include <cuda.h>
#include <cuda_runtime_api.h>

#ifdef HERD_HAVE_NCCL
#include <nccl.h>
#endif

/* The CUDA runtime entry points herd uses. Filled by herd__gpu_load_cuda. */
typedef struct herd_cudart_api {
    cudaError_t (*GetDeviceCount)(int *count);
    cudaError_t (*GetDevice)(int *device);
    cudaError_t (*SetDevice)(int device);
    cudaError_t (*GetLastError)(void);
    const char *(*GetErrorString)(cudaError_t err);
    const char *(*GetErrorName)(cudaError_t err);
    cudaError_t (*EventCreateWithFlags)(cudaEvent_t *event, unsigned int flags);
    cudaError_t (*EventRecord)(cudaEvent_t event, cudaStream_t stream);
    cudaError_t (*EventQuery)(cudaEvent_t event);
    cudaError_t (*EventDestroy)(cudaEvent_t event);
    cudaError_t (*StreamCreateWithFlags)(cudaStream_t *stream, unsigned int flags);
    cudaError_t (*StreamWaitEvent)(cudaStream_t stream, cudaEvent_t event, unsigned int flags);
    cudaError_t (*StreamSynchronize)(cudaStream_t stream);
    cudaError_t (*StreamQuery)(cudaStream_t stream);
    cudaError_t (*StreamDestroy)(cudaStream_t stream);
    cudaError_t (*MemcpyAsync)(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                               cudaStream_t stream);
    cudaError_t (*Malloc)(void **ptr, size_t bytes);
    cudaError_t (*Free)(void *ptr);
    cudaError_t (*MallocHost)(void **ptr, size_t bytes);
    cudaError_t (*FreeHost)(void *ptr);
} herd_cudart_api_t;

/* The CUDA driver entry points herd uses: none of them creates a context. */
typedef struct herd_cudrv_api {
    CUresult (*Init)(unsigned int flags);
    CUresult (*DeviceGet)(CUdevice *device, int ordinal);
    CUresult (*DevicePrimaryCtxGetState)(CUdevice dev, unsigned int *flags, int *active);
    CUresult (*CtxGetCurrent)(CUcontext *ctx);
    CUresult (*CtxSetCurrent)(CUcontext ctx);
    CUresult (*CtxGetDevice)(CUdevice *device);
    CUresult (*PointerGetAttributes)(unsigned int n, CUpointer_attribute *attributes, void **data,
                                     CUdeviceptr ptr);
} herd_cudrv_api_t;

#ifdef HERD_HAVE_NCCL
/* NCCL's entry points: the ones herd calls now and the ones the next collectives need. */
typedef struct herd_nccl_api {
    ncclResult_t (*GetVersion)(int *version);
    const char *(*GetErrorString)(ncclResult_t result);
    ncclResult_t (*GetUniqueId)(ncclUniqueId *id);
    ncclResult_t (*CommInitRank)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
    ncclResult_t (*CommDestroy)(ncclComm_t comm);
    ncclResult_t (*CommAbort)(ncclComm_t comm);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t comm, ncclResult_t *async_error);
    ncclResult_t (*AllReduce)(const void *send, void *recv, size_t count, ncclDataType_t type,
                              ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*Broadcast)(const void *send, void *recv, size_t count, ncclDataType_t type,
                              int root, ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*AllGather)(const void *send, void *recv, size_t send_count,
                              ncclDataType_t type, ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*ReduceScatter)(const void *send, void *recv, size_t recv_count,
                                  ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                                  cudaStream_t stream);
    ncclResult_t (*Send)(const void *send, size_t count, ncclDataType_t type, int peer,
                         ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*Recv)(void *recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                         cudaStream_t stream);
    ncclResult_t (*GroupStart)(void);
    ncclResult_t (*GroupEnd)(void);
    ncclResult_t (*RedOpCreatePreMulSum)(ncclRedOp_t *op, void *scalar, ncclDataType_t type,
                                         ncclScalarResidence_t residence, ncclComm_t comm);
    ncclResult_t (*RedOpDestroy)(ncclRedOp_t op, ncclComm_t comm);
} herd_nccl_api_t;

extern herd_nccl_api_t herd__nccl;

/* The oldest NCCL herd accepts: ncclAvg and ncclBfloat16 arrived in 2.10, PreMulSum (scaling)
 * in 2.11. */
enum { HERD_NCCL_MIN_VERSION = 21100 };

/* Loads NCCL once (after herd__gpu_load_cuda). HERD_OK, or HERD_ERR_BACKEND with the reason
 * (not found, a missing entry point, older than HERD_NCCL_MIN_VERSION); the failure is kept,
 * and returned again without retrying. */
int herd__gpu_load_nccl(void);
#endif

extern herd_cudart_api_t herd__cudart;
extern herd_cudrv_api_t herd__cudrv;

/* Loads the CUDA runtime and the driver once. HERD_OK, or HERD_ERR_NOT_SUPPORTED with the
 * reason; the failure is kept and returned again without retrying. Thread safe. */
int herd__gpu_load_cuda(void);

/* 1 when the CUDA driver is already loaded in this process (by herd or anyone else), with
 * herd__cudrv then filled; 0 when it is not, so no memory of this process can be device memory.
 * Loads nothing. Thread safe. */
int herd__gpu_driver_present(void);

/* dlopen()s `file`, else `fallback` (may be NULL), with RTLD_NOW | RTLD_LOCAL; on failure
 * writes dlerror()'s text to why. Exposed for the loader's unit test. */
void *herd__gpu_dlopen(const char *file, const char *fallback, char *why, size_t why_len);

#endif
