/* backend/gpu_cuda.c - GPU memory with the CUDA runtime and NCCL (both C APIs, no kernels).
 *
 * herd owns one CUDA stream per process. A GPU op's data is read only after an event recorded on
 * the producer's stream at submit (herd__gpu_record_ready), so callers never synchronize first.
 * Fused groups are packed with cudaMemcpyAsync into a device fusion buffer (cudaMalloc, never
 * managed memory), reduced with one ncclAllReduce or ncclBroadcast, and unpacked; tensors that
 * go alone are reduced where they lie. NCCL's ncclAvg gives AVERAGE, and fp16/bf16 are native.
 * With HERD_GPU_BACKEND=mpi, or without NCCL, each collective is staged through pinned host
 * memory and the MPI backend instead, so several ranks can share one GPU.
 *
 * Threads: everything here but the submit-side functions runs under the progress lock.
 */
#include <cuda_runtime_api.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HERD_HAVE_NCCL
#include <nccl.h>
#endif

#include "backend/gpu.h"
#include "dtype.h"
#include "herd.h"
#include "log.h"
#include "status.h"

/* ---- per-op events ------------------------------------------------------------------------ */

typedef struct op_events {
    cudaEvent_t ready; /* recorded on the producer's stream at submit */
    cudaEvent_t done;  /* recorded on herd's stream after the op's last copy */
    atomic_int issued; /* done has been recorded for the current use of the slot */
} op_events_t;

static op_events_t *events;
static uint32_t events_capacity;
static atomic_int device_count = -1; /* visible CUDA devices, probed once */
/* A GPU op was submitted: from then on host submissions are checked for device pointers too.
 * Before, asking CUDA about a pointer would create a CUDA context (hundreds of MB) in every
 * CPU-only process. */
static atomic_int gpu_seen;

int herd__gpu_init(uint32_t capacity)
{
    if (events != NULL)
        return HERD_OK; /* the handle table, and so its capacity, outlives restarts */
    events = calloc(capacity, sizeof *events);
    if (events == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate GPU event table");
    events_capacity = capacity;
    return HERD_OK;
}

void herd__gpu_fini(void)
{
    /* Events stay for the process's life with the handle table; CUDA frees them at exit. */
}

static int cuda_failed(cudaError_t err, const char *what)
{
    return herd__status_set(HERD_ERR_BACKEND, "%s failed: %s (%s)", what,
                            cudaGetErrorString(err), cudaGetErrorName(err));
}

static int visible_devices(void)
{
    int n = atomic_load(&device_count);
    if (n < 0) {
        if (cudaGetDeviceCount(&n) != cudaSuccess)
            n = 0;
        cudaGetLastError(); /* a machine without a driver leaves a sticky-free error: clear it */
        atomic_store(&device_count, n);
    }
    return n;
}

int herd__gpu_check_buffer(const char *name, const char *what, const void *buf, int device)
{
    int ndev = visible_devices();
    if (device >= 0 && ndev == 0)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                "tensor '%s': device %d requested, but no CUDA device is "
                                "visible to this process", name, device);
    if (device >= ndev && device >= 0)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': device %d does not exist (%d visible)", name,
                                device, ndev);
    if (ndev == 0 || buf == NULL || (device == HERD_DEVICE_CPU && !atomic_load(&gpu_seen)))
        return HERD_OK;
    struct cudaPointerAttributes attr;
    cudaError_t err = cudaPointerGetAttributes(&attr, buf);
    int on_device = 0, dev = -1;
    if (err == cudaSuccess && attr.type == cudaMemoryTypeDevice) {
        on_device = 1;
        dev = attr.device;
    } else if (err != cudaSuccess) {
        cudaGetLastError(); /* plain host memory on older drivers: not an error for us */
    }
    if (device == HERD_DEVICE_CPU && on_device)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': %s %p is memory of CUDA device %d, but device is "
                                "HERD_DEVICE_CPU", name, what, buf, dev);
    if (device >= 0 && err == cudaSuccess && attr.type == cudaMemoryTypeManaged)
        return HERD_OK;
    if (device >= 0 && !on_device)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': %s %p is host memory, but device is CUDA device "
                                "%d", name, what, buf, device);
    if (device >= 0 && dev != device)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': %s %p is memory of CUDA device %d, not %d", name,
                                what, buf, dev, device);
    return HERD_OK;
}

static int ensure_events(uint32_t index)
{
    op_events_t *e = &events[index];
    cudaError_t err = cudaSuccess;
    if (e->ready == NULL)
        err = cudaEventCreateWithFlags(&e->ready, cudaEventDisableTiming);
    if (err == cudaSuccess && e->done == NULL)
        err = cudaEventCreateWithFlags(&e->done, cudaEventDisableTiming);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "cudaEventCreate");
}

int herd__gpu_record_ready(uint32_t index, int device, void *stream)
{
    if (events == NULL || index >= events_capacity)
        return herd__status_set(HERD_ERR_INTERNAL, "GPU event table not ready");
    /* The event must belong to the tensor's device; the caller's current device is theirs,
     * so it is put back. */
    int previous = 0;
    cudaGetDevice(&previous);
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess)
        return cuda_failed(err, "cudaSetDevice");
    atomic_store(&gpu_seen, 1);
    int rc = ensure_events(index);
    if (rc == HERD_OK) {
        atomic_store(&events[index].issued, 0);
        err = cudaEventRecord(events[index].ready, (cudaStream_t)stream);
        rc = err == cudaSuccess ? HERD_OK
                                : cuda_failed(err, "cudaEventRecord on the producer stream");
    }
    cudaSetDevice(previous);
    return rc;
}

int herd__gpu_stream_wait(uint32_t index, void *stream)
{
    if (events == NULL || index >= events_capacity || events[index].done == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "not a GPU operation");
    if (!atomic_load(&events[index].issued))
        return HERD_INPROGRESS;
    cudaError_t err = cudaStreamWaitEvent((cudaStream_t)stream, events[index].done, 0);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "cudaStreamWaitEvent");
}

/* ---- the data plane ----------------------------------------------------------------------- */

typedef struct gpu_backend {
    herd_backend_t base;
    int device;
    cudaStream_t stream;
    herd_backend_t *host; /* staging path */
    void *fusion;         /* device */
    size_t fusion_cap;
    void *pinned;         /* staging */
    size_t pinned_cap;
    int size;
    cudaError_t copy_error; /* first failed cudaMemcpyAsync since the last finish */
#ifdef HERD_HAVE_NCCL
    ncclComm_t comm; /* NULL: staging through MPI */
#endif
} gpu_backend_t;

static int use_nccl(const gpu_backend_t *g)
{
#ifdef HERD_HAVE_NCCL
    return g->comm != NULL;
#else
    (void)g;
    return 0;
#endif
}

#ifdef HERD_HAVE_NCCL
static int nccl_failed(ncclResult_t r, const char *what)
{
    return herd__status_set(HERD_ERR_BACKEND, "%s failed: %s", what, ncclGetErrorString(r));
}

static ncclDataType_t nccl_type(int dtype)
{
    switch (dtype) {
    case HERD_UINT8: return ncclUint8;
    case HERD_INT8: return ncclInt8;
    case HERD_INT32: return ncclInt32;
    case HERD_INT64: return ncclInt64;
    case HERD_FLOAT16: return ncclFloat16;
    case HERD_BFLOAT16: return ncclBfloat16;
    case HERD_FLOAT32: return ncclFloat32;
    default: return ncclFloat64;
    }
}

static ncclRedOp_t nccl_op(int op)
{
    switch (op) {
    case HERD_AVERAGE: return ncclAvg;
    case HERD_MIN: return ncclMin;
    case HERD_MAX: return ncclMax;
    case HERD_PRODUCT: return ncclProd;
    default: return ncclSum;
    }
}
#endif

static int ensure_pinned(gpu_backend_t *g, size_t bytes)
{
    if (bytes <= g->pinned_cap)
        return HERD_OK;
    if (g->pinned != NULL)
        cudaFreeHost(g->pinned);
    g->pinned = NULL;
    g->pinned_cap = 0;
    cudaError_t err = cudaMallocHost(&g->pinned, bytes);
    if (err != cudaSuccess)
        return cuda_failed(err, "cudaMallocHost for GPU staging");
    g->pinned_cap = bytes;
    return HERD_OK;
}

/* Staging: device -> pinned host -> MPI -> pinned host -> device. */
static int staged(gpu_backend_t *g, const void *send, void *recv, int64_t count, int dtype,
                  int op, int root, int is_bcast)
{
    size_t bytes = (size_t)count * herd__dtype_size(dtype);
    int rc = ensure_pinned(g, bytes);
    if (rc != HERD_OK)
        return rc;
    cudaError_t err = cudaMemcpyAsync(g->pinned, send, bytes, cudaMemcpyDeviceToHost, g->stream);
    if (err == cudaSuccess)
        err = cudaStreamSynchronize(g->stream);
    if (err != cudaSuccess)
        return cuda_failed(err, "staging a GPU tensor to host memory");
    rc = is_bcast ? g->host->broadcast(g->host, g->pinned, count, dtype, root)
                  : g->host->allreduce(g->host, g->pinned, g->pinned, count, dtype, op);
    if (rc != HERD_OK)
        return rc;
    err = cudaMemcpyAsync(recv, g->pinned, bytes, cudaMemcpyHostToDevice, g->stream);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "staging a result back to the GPU");
}

static int gpu_allreduce(herd_backend_t *be, const void *send, void *recv, int64_t count,
                         int dtype, int op)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (count == 0)
        return HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclResult_t r = ncclAllReduce(send, recv, (size_t)count, nccl_type(dtype), nccl_op(op),
                                       g->comm, g->stream);
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclAllReduce");
    }
#endif
    return staged(g, send, recv, count, dtype, op, 0, 0);
}

static int gpu_broadcast(herd_backend_t *be, void *buf, int64_t count, int dtype, int root)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (count == 0)
        return HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclResult_t r = ncclBroadcast(buf, buf, (size_t)count, nccl_type(dtype), root, g->comm,
                                       g->stream);
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclBroadcast");
    }
#endif
    return staged(g, buf, buf, count, dtype, HERD_SUM, root, 1);
}

static void gpu_copy(void *be, void *dst, const void *src, size_t n)
{
    gpu_backend_t *g = be;
    /* The copy function cannot fail the group itself: its error is kept for gpu_finish. */
    cudaError_t err = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, g->stream);
    if (err != cudaSuccess && g->copy_error == cudaSuccess)
        g->copy_error = err;
}

static int gpu_fusion_buffer(herd_backend_t *be, size_t bytes, void **out)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (bytes > g->fusion_cap) {
        cudaError_t err = cudaStreamSynchronize(g->stream); /* the old buffer may be in use */
        if (err == cudaSuccess && g->fusion != NULL)
            err = cudaFree(g->fusion);
        g->fusion = NULL;
        g->fusion_cap = 0;
        if (err == cudaSuccess)
            err = cudaMalloc(&g->fusion, bytes);
        if (err != cudaSuccess)
            return cuda_failed(err, "cudaMalloc of the GPU fusion buffer");
        g->fusion_cap = bytes;
    }
    *out = g->fusion;
    return HERD_OK;
}

static int gpu_before_group(herd_backend_t *be, const uint32_t *ops, int64_t n)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    /* Rounds also run on application threads that drive their own waits: make herd's device
     * current before any allocation or copy of this group. */
    cudaError_t set = cudaSetDevice(g->device);
    if (set != cudaSuccess)
        return cuda_failed(set, "cudaSetDevice");
    for (int64_t i = 0; i < n; i++) {
        cudaError_t err = cudaStreamWaitEvent(g->stream, events[ops[i]].ready, 0);
        if (err != cudaSuccess)
            return cuda_failed(err, "cudaStreamWaitEvent on a producer's event");
    }
    return HERD_OK;
}

static int gpu_after_group(herd_backend_t *be, const uint32_t *ops, int64_t n)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    for (int64_t i = 0; i < n; i++) {
        cudaError_t err = cudaEventRecord(events[ops[i]].done, g->stream);
        if (err != cudaSuccess)
            return cuda_failed(err, "cudaEventRecord on herd's stream");
        atomic_store(&events[ops[i]].issued, 1);
    }
    return HERD_OK;
}

static int gpu_finish(herd_backend_t *be)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    cudaError_t err = cudaStreamSynchronize(g->stream);
    cudaError_t copy = g->copy_error;
    g->copy_error = cudaSuccess;
    if (err == cudaSuccess && copy != cudaSuccess)
        return cuda_failed(copy, "cudaMemcpyAsync packing a fused group");
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "GPU collective");
}

static void gpu_destroy(herd_backend_t *be)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    cudaSetDevice(g->device);
    if (g->stream != NULL)
        cudaStreamSynchronize(g->stream);
#ifdef HERD_HAVE_NCCL
    if (g->comm != NULL)
        ncclCommDestroy(g->comm);
#endif
    if (g->fusion != NULL)
        cudaFree(g->fusion);
    if (g->pinned != NULL)
        cudaFreeHost(g->pinned);
    if (g->stream != NULL)
        cudaStreamDestroy(g->stream);
    free(g);
}

/* Local set-up; returns HERD_OK or an error with the message set. */
static int open_device(gpu_backend_t *g)
{
    if (visible_devices() == 0)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED, "no CUDA device is visible");
    cudaError_t err = cudaSetDevice(g->device);
    if (err == cudaSuccess)
        err = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "opening the CUDA device");
}

int herd__gpu_backend_create(herd_backend_t **out, herd_ctrl_t *ctrl, const herd_config_t *cfg,
                             int device, herd_backend_t *host)
{
    gpu_backend_t *g = calloc(1, sizeof *g);
    if (g == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the GPU backend");
    g->base = (herd_backend_t){.name = "gpu", .allreduce = gpu_allreduce,
                               .broadcast = gpu_broadcast, .copy = gpu_copy,
                               .fusion_buffer = gpu_fusion_buffer, .finish = gpu_finish,
                               .before_group = gpu_before_group,
                               .after_group = gpu_after_group, .destroy = gpu_destroy};
    g->device = device;
    g->host = host;
    g->size = herd__ctrl_size(ctrl);
    /* Every rank must agree before any collective of the GPU plane: one rank without a device
     * must fail the group everywhere, not leave the others inside NCCL. */
    int rc = open_device(g);
    char why[HERD_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rc == HERD_OK ? "" : herd__status_last());
    uint64_t ok = rc == HERD_OK ? 1 : 0;
    int crc = herd__ctrl_allreduce_band(ctrl, &ok, 1);
    if (crc != HERD_OK || !ok) {
        gpu_destroy(&g->base);
        if (crc != HERD_OK)
            return crc;
        return herd__status_set(rc != HERD_OK ? rc : HERD_ERR_NOT_SUPPORTED,
                                "the GPU data plane could not start on every rank%s%s",
                                why[0] ? "; here: " : " (this rank was fine)", why);
    }
#ifdef HERD_HAVE_NCCL
    if (cfg->gpu_backend != HERD_GPU_BACKEND_MPI) {
        /* Rank 0's id travels with its status, so a failure there stops every rank here. */
        struct {
            int32_t result;
            ncclUniqueId id;
        } boot;
        memset(&boot, 0, sizeof boot);
        if (herd__ctrl_rank(ctrl) == 0)
            boot.result = (int32_t)ncclGetUniqueId(&boot.id);
        crc = herd__ctrl_bcast(ctrl, &boot, sizeof boot, 0);
        ncclResult_t r = (ncclResult_t)boot.result;
        if (r == ncclSuccess && crc == HERD_OK)
            r = ncclCommInitRank(&g->comm, g->size, boot.id, herd__ctrl_rank(ctrl));
        /* All or none: a rank without a communicator must not leave the others in NCCL. */
        uint64_t all = r == ncclSuccess && crc == HERD_OK;
        if (crc == HERD_OK)
            crc = herd__ctrl_allreduce_band(ctrl, &all, 1);
        if (crc != HERD_OK || !all) {
            if (r == ncclSuccess && g->comm != NULL)
                ncclCommDestroy(g->comm);
            g->comm = NULL;
            gpu_destroy(&g->base);
            if (crc != HERD_OK)
                return crc;
            return r != ncclSuccess ? nccl_failed(r, "ncclCommInitRank")
                                    : herd__status_set(HERD_ERR_BACKEND,
                                                       "ncclCommInitRank failed on another rank");
        }
    }
#else
    (void)cfg;
#endif
    HERD_LOG_INF("GPU data plane on CUDA device %d: %s", device,
                 use_nccl(g) ? "NCCL" : "staged through host memory and MPI");
    *out = &g->base;
    return HERD_OK;
}
