/* backend/gpu_cuda.c - GPU memory with the CUDA runtime and NCCL (both C APIs, no kernels),
 * every call through the dlsym tables of gpu_loader.h (no link-time CUDA or NCCL dependency).
 *
 * herd owns one CUDA stream per process. A GPU op's data is read only after an event recorded on
 * the producer's stream at submit (herd__gpu_record_ready), so callers never synchronize first.
 * Fused groups are packed with cudaMemcpyAsync into a device fusion buffer (cudaMalloc, never
 * managed memory), reduced with one ncclAllReduce or ncclBroadcast, and unpacked; tensors that
 * go alone are reduced where they lie. NCCL's ncclAvg gives AVERAGE, and fp16/bf16 are native.
 * With HERD_GPU_BACKEND=mpi, or without NCCL, each collective is staged through pinned host
 * memory and the MPI backend instead, so several ranks can share one GPU.
 *
 * Every rank issues every planned collective (coordinator.h's invariant), even where it failed
 * locally: before a group, the ranks agree (one MPI_Allreduce on herd's control communicator)
 * that each prepared it (device, producer events, fusion or staging buffer), and a group that
 * failed anywhere is issued nowhere. An issued group's ops complete when the device does: the
 * coordinator polls them (gpu_poll_op: each op's done event, and NCCL's asynchronous error) from
 * its progress loop, so negotiation, host groups and later GPU groups go on meanwhile. An op still
 * running HERD_STALL_TIMEOUT_SECONDS after it was issued, or an NCCL error, aborts the
 * communicator, and that op and every later GPU op fail with HERD_ERR_BACKEND (the next groups on
 * every rank, by the agreement).
 *
 * One stream, so one fusion buffer and one staging buffer suffice: a group's packing copies are
 * ordered after the previous group's unpacking on the stream itself. Only growing them waits
 * (bounded) for the stream to drain, since cudaFree/cudaFreeHost of memory in use is not allowed
 * (and synchronizes the device anyway); that happens only when a larger group first appears.
 *
 * Devices: herd switches the calling thread's device only when the tensor's is not current,
 * and puts back exactly the context that was current (never making one on another device).
 *
 * Threads: everything here but the submit-side functions runs under the progress lock.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "backend/gpu.h"
#include "backend/gpu_loader.h"
#include "dtype.h"
#include "herd.h"
#include "log.h"
#include "status.h"

#define CU herd__cudart
#define DRV herd__cudrv

/* ---- per-op events ------------------------------------------------------------------------ */

typedef struct op_events {
    cudaEvent_t ready; /* recorded on the producer's stream at submit */
    cudaEvent_t done;  /* recorded on herd's stream after the op's last copy */
    atomic_int issued; /* done has been recorded for the current use of the slot */
    int64_t seq;       /* the group it was issued in (coordinator only) */
    int64_t issued_ms; /* when (coordinator only) */
} op_events_t;

static op_events_t *events;
static uint32_t events_capacity;
static atomic_int device_count = -1; /* visible CUDA devices, probed once */
/* The GPU plane failed to start (collectively, so alike on every rank): later groups fail with
 * this instead of trying the whole set-up again. Cleared by the next herd_init. */
static int create_failed;
static char create_why[HERD_ERRMSG_MAX];

int herd__gpu_init(uint32_t capacity)
{
    create_failed = HERD_OK;
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
    return herd__status_set(HERD_ERR_BACKEND, "%s failed: %s (%s)", what, CU.GetErrorString(err),
                            CU.GetErrorName(err));
}

static int visible_devices(void)
{
    int n = atomic_load(&device_count);
    if (n < 0) {
        if (CU.GetDeviceCount(&n) != cudaSuccess)
            n = 0;
        CU.GetLastError(); /* a machine without a driver leaves an error behind: clear it */
        atomic_store(&device_count, n);
    }
    return n;
}

/* Where `buf` lives, from the driver, which never creates a context to answer. */
typedef struct where {
    int device_memory; /* memory of a device (not managed, not pinned host) */
    int managed;
    int ordinal; /* the device of device memory, else -1 */
} where_t;

static where_t locate(const void *buf)
{
    where_t w = {0, 0, -1};
    unsigned int type = 0, managed = 0;
    int ordinal = -1;
    CUpointer_attribute attrs[3] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                    CU_POINTER_ATTRIBUTE_IS_MANAGED,
                                    CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
    void *data[3] = {&type, &managed, &ordinal};
    /* A pointer CUDA does not know (pageable host memory) succeeds with zeroed attributes; a
     * driver nobody initialised fails, and then nothing can be device memory either. */
    if (DRV.PointerGetAttributes(3, attrs, data, (CUdeviceptr)(uintptr_t)buf) != CUDA_SUCCESS)
        return w;
    w.managed = managed != 0;
    if (type == CU_MEMORYTYPE_DEVICE && !w.managed) {
        w.device_memory = 1;
        w.ordinal = ordinal;
    }
    return w;
}

int herd__gpu_check_buffer(const char *name, const char *what, const void *buf, int device)
{
    if (device == HERD_DEVICE_CPU) {
        /* Device memory needs a CUDA driver in the process: without one loaded nothing is
         * asked and nothing is loaded, so a CPU-only process never starts CUDA. */
        if (buf == NULL || !herd__gpu_driver_present())
            return HERD_OK;
        where_t w = locate(buf);
        if (w.device_memory)
            return herd__status_set(HERD_ERR_INVALID_ARG,
                                    "tensor '%s': %s %p is memory of CUDA device %d, but device "
                                    "is HERD_DEVICE_CPU", name, what, buf, w.ordinal);
        return HERD_OK;
    }
    if (herd__gpu_load_cuda() != HERD_OK)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED, "tensor '%s': device %d requested: %s",
                                name, device, herd__status_last());
    int ndev = visible_devices();
    if (ndev == 0)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                "tensor '%s': device %d requested, but no CUDA device is "
                                "visible to this process", name, device);
    if (device >= ndev)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': device %d does not exist (%d visible)", name,
                                device, ndev);
    if (buf == NULL)
        return HERD_OK;
    where_t w = locate(buf);
    if (w.managed)
        return HERD_OK;
    if (!w.device_memory)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': %s %p is host memory, but device is CUDA device "
                                "%d", name, what, buf, device);
    if (w.ordinal != device)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': %s %p is memory of CUDA device %d, not %d", name,
                                what, buf, w.ordinal, device);
    return HERD_OK;
}

/* ---- the calling thread's device ----------------------------------------------------------
 * herd makes `device` current only when it is not, and afterwards puts back exactly the context
 * that was current. A thread that had none gets its previous runtime device back only if that
 * device already has a context: cudaSetDevice would create one (hundreds of MB on CUDA >= 12)
 * on a device the application never used. */

typedef struct device_guard {
    int switched;
    CUcontext saved;  /* the context current before, possibly NULL */
    int saved_device; /* the runtime's device before, -1 unknown */
} device_guard_t;

static int primary_active(int ordinal)
{
    CUdevice dev;
    unsigned int flags = 0;
    int active = 0;
    if (ordinal < 0 || DRV.DeviceGet(&dev, ordinal) != CUDA_SUCCESS)
        return 0;
    return DRV.DevicePrimaryCtxGetState(dev, &flags, &active) == CUDA_SUCCESS && active;
}

static int enter_device(int device, device_guard_t *g)
{
    g->switched = 0;
    g->saved = NULL;
    g->saved_device = -1;
    CUdevice want, cur;
    if (DRV.CtxGetCurrent(&g->saved) == CUDA_SUCCESS && g->saved != NULL &&
        DRV.DeviceGet(&want, device) == CUDA_SUCCESS && DRV.CtxGetDevice(&cur) == CUDA_SUCCESS &&
        cur == want)
        return HERD_OK;
    if (CU.GetDevice(&g->saved_device) != cudaSuccess)
        g->saved_device = -1;
    cudaError_t err = CU.SetDevice(device);
    if (err != cudaSuccess)
        return cuda_failed(err, "cudaSetDevice");
    g->switched = 1;
    return HERD_OK;
}

static void leave_device(device_guard_t *g)
{
    if (!g->switched)
        return;
    g->switched = 0;
    if (g->saved != NULL)
        DRV.CtxSetCurrent(g->saved);
    else if (primary_active(g->saved_device))
        CU.SetDevice(g->saved_device);
    else
        DRV.CtxSetCurrent(NULL);
}

/* ---- submit side ---------------------------------------------------------------------------- */

static int ensure_events(uint32_t index)
{
    op_events_t *e = &events[index];
    cudaError_t err = cudaSuccess;
    if (e->ready == NULL)
        err = CU.EventCreateWithFlags(&e->ready, cudaEventDisableTiming);
    if (err == cudaSuccess && e->done == NULL)
        err = CU.EventCreateWithFlags(&e->done, cudaEventDisableTiming);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "cudaEventCreate");
}

int herd__gpu_record_ready(uint32_t index, int device, void *stream)
{
    if (events == NULL || index >= events_capacity)
        return herd__status_set(HERD_ERR_INTERNAL, "GPU event table not ready");
    /* The event must belong to the tensor's device; the caller's context is theirs. */
    device_guard_t guard;
    int rc = enter_device(device, &guard);
    if (rc != HERD_OK)
        return rc;
    rc = ensure_events(index);
    if (rc == HERD_OK) {
        atomic_store(&events[index].issued, 0);
        cudaError_t err = CU.EventRecord(events[index].ready, (cudaStream_t)stream);
        rc = err == cudaSuccess ? HERD_OK
                                : cuda_failed(err, "cudaEventRecord on the producer stream");
    }
    leave_device(&guard);
    return rc;
}

int herd__gpu_stream_wait(uint32_t index, void *stream)
{
    if (events == NULL || index >= events_capacity || events[index].done == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "not a GPU operation");
    if (!atomic_load(&events[index].issued))
        return HERD_INPROGRESS;
    cudaError_t err = CU.StreamWaitEvent((cudaStream_t)stream, events[index].done, 0);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "cudaStreamWaitEvent");
}

/* ---- the data plane ----------------------------------------------------------------------- */

typedef struct gpu_backend {
    herd_backend_t base;
    int device;
    cudaStream_t stream;
    cudaEvent_t group_done; /* recorded after each group; polled by gpu_finish */
    herd_backend_t *host;   /* staging path */
    herd_ctrl_t *ctrl;      /* the agreement before each group */
    void *fusion;           /* device */
    size_t fusion_cap;
    size_t fusion_min;      /* the size the fusion and staging buffers are made at (when
                             * they can be): the largest fused group */
    void *pinned; /* staging */
    size_t pinned_cap;
    int size;
    int64_t timeout_ms;     /* HERD_STALL_TIMEOUT_SECONDS: a group running longer is aborted */
    int64_t issue_seq;      /* groups issued so far */
    int64_t completed_seq;  /* every group up to this one is known complete */
    cudaError_t copy_error; /* first failed cudaMemcpyAsync since the last finish */
    device_guard_t guard;   /* from before_group to finish: the driving thread's context */
    int broken;             /* a group failed after it was issued: no more GPU groups */
    char broken_why[HERD_ERRMSG_MAX];
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
#define NCCL herd__nccl

static int nccl_failed(ncclResult_t r, const char *what)
{
    return herd__status_set(HERD_ERR_BACKEND, "%s failed: %s", what, NCCL.GetErrorString(r));
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

static int drain_stream(gpu_backend_t *g);

/* Allocates `most` bytes with `alloc` (CU.Malloc or CU.MallocHost), or `bytes` (<= most) when
 * that much cannot be had; *got says which. Out of memory is not left sticky. */
static cudaError_t alloc_most(cudaError_t (*alloc)(void **, size_t), void **p, size_t most,
                              size_t bytes, size_t *got)
{
    cudaError_t err = alloc(p, most);
    *got = most;
    if (err != cudaSuccess && most > bytes) {
        CU.GetLastError();
        *got = bytes;
        err = alloc(p, bytes);
    }
    if (err != cudaSuccess)
        *p = NULL;
    return err;
}

/* Grows the pinned staging buffer before the group's agreement, never during a group. Like the
 * fusion buffer it is made at the largest group's size, so that groups that differ from step to
 * step do not drain the stream to regrow it; at the group's own size when that much cannot be
 * pinned. */
static int ensure_pinned(gpu_backend_t *g, size_t bytes)
{
    if (bytes <= g->pinned_cap)
        return HERD_OK;
    if (g->pinned != NULL) {
        /* An earlier group's copy back to the device may still read it. */
        int rc = drain_stream(g);
        if (rc != HERD_OK)
            return rc;
        CU.FreeHost(g->pinned);
    }
    g->pinned = NULL;
    g->pinned_cap = 0;
    size_t got;
    cudaError_t err = alloc_most(CU.MallocHost, &g->pinned,
                                 g->fusion_min > bytes ? g->fusion_min : bytes, bytes, &got);
    if (err != cudaSuccess)
        return cuda_failed(err, "cudaMallocHost for GPU staging");
    g->pinned_cap = got;
    return HERD_OK;
}

/* Copies `bytes` from the device into pinned memory and waits for the copy (no collective in
 * flight on the stream: bounded). */
static cudaError_t stage_in(gpu_backend_t *g, const void *src, size_t bytes)
{
    cudaError_t err = CU.MemcpyAsync(g->pinned, src, bytes, cudaMemcpyDefault, g->stream);
    return err == cudaSuccess ? CU.StreamSynchronize(g->stream) : err;
}

static int stage_out(gpu_backend_t *g, void *dst, const void *src, size_t bytes, int rc,
                     cudaError_t in_err)
{
    if (in_err != cudaSuccess)
        return cuda_failed(in_err, "staging a GPU tensor to host memory");
    if (rc != HERD_OK)
        return rc;
    cudaError_t err = CU.MemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g->stream);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "staging a result back to the GPU");
}

/* Staging: device -> pinned host -> MPI -> pinned host -> device. The MPI collective is issued
 * even when the copy to the host failed, so the other ranks are not left inside it; the error
 * fails the group here. `scale` (NULL: none) takes the host's scaled allreduce. */
static int staged(gpu_backend_t *g, const void *send, void *recv, int64_t count, int dtype,
                  int op, int root, int is_bcast, const herd_scale_t *scale)
{
    size_t bytes = (size_t)count * herd__dtype_size(dtype);
    if (bytes > g->pinned_cap)
        return herd__status_set(HERD_ERR_INTERNAL, "staging buffer smaller than its group");
    cudaError_t err = stage_in(g, send, bytes);
    int rc;
    if (is_bcast)
        rc = g->host->broadcast(g->host, g->pinned, count, dtype, root);
    else if (scale != NULL)
        rc = g->host->allreduce_scaled(g->host, g->pinned, g->pinned, count, dtype, op, scale);
    else
        rc = g->host->allreduce(g->host, g->pinned, g->pinned, count, dtype, op);
    return stage_out(g, recv, g->pinned, bytes, rc, err);
}

static int gpu_allreduce(herd_backend_t *be, const void *send, void *recv, int64_t count,
                         int dtype, int op)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (count == 0)
        return HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclResult_t r = NCCL.AllReduce(send, recv, (size_t)count, nccl_type(dtype), nccl_op(op),
                                        g->comm, g->stream);
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclAllReduce");
    }
#endif
    return staged(g, send, recv, count, dtype, op, 0, 0, NULL);
}

/* Scaling without a kernel: NCCL's PreMulSum multiplies each rank's input by its own scalar
 * before the sum, so prescale, postscale and AVERAGE's division fold into one factor per rank
 * (exact as the host computes it when every rank uses the same postscale). Only SUM reaches
 * here scaled (the API refuses the rest); staged, the host path scales exactly. */
static int gpu_allreduce_scaled(herd_backend_t *be, const void *send, void *recv, int64_t count,
                                int dtype, int op, const herd_scale_t *scale)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (count == 0)
        return HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        double f = scale->pre * scale->post / (scale->divisor > 1 ? scale->divisor : 1);
        if (op != HERD_SUM)
            return f == 1.0 ? gpu_allreduce(be, send, recv, count, dtype, op)
                            : herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                               "scaling a %s reduction on the GPU",
                                               herd__op_name(op));
        union {
            float f32;
            double f64;
            uint16_t f16;
        } scalar;
        switch (dtype) {
        case HERD_FLOAT32: scalar.f32 = (float)f; break;
        case HERD_FLOAT64: scalar.f64 = f; break;
        case HERD_FLOAT16: scalar.f16 = herd__float_to_fp16((float)f); break;
        case HERD_BFLOAT16: scalar.f16 = herd__float_to_bf16((float)f); break;
        default:
            return herd__status_set(HERD_ERR_NOT_SUPPORTED, "scaling %s on the GPU",
                                    herd__dtype_name(dtype));
        }
        ncclRedOp_t rop;
        ncclResult_t r = NCCL.RedOpCreatePreMulSum(&rop, &scalar, nccl_type(dtype),
                                                   ncclScalarHostImmediate, g->comm);
        if (r != ncclSuccess)
            return nccl_failed(r, "ncclRedOpCreatePreMulSum");
        r = NCCL.AllReduce(send, recv, (size_t)count, nccl_type(dtype), rop, g->comm, g->stream);
        ncclResult_t d = NCCL.RedOpDestroy(rop, g->comm);
        if (r == ncclSuccess)
            r = d;
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclAllReduce (PreMulSum)");
    }
#endif
    return staged(g, send, recv, count, dtype, op, 0, 0, scale);
}

static int gpu_broadcast(herd_backend_t *be, void *buf, int64_t count, int dtype, int root)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (count == 0)
        return HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclResult_t r = NCCL.Broadcast(buf, buf, (size_t)count, nccl_type(dtype), root, g->comm,
                                        g->stream);
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclBroadcast");
    }
#endif
    return staged(g, buf, buf, count, dtype, HERD_SUM, root, 1, NULL);
}

/* ---- allgather, reduce-scatter, all-to-all ------------------------------------------------
 * Equal-size forms, each tensor alone (the planner does not fuse them on a GPU). NCCL where it
 * is up; else staged like allreduce: the input copied to pinned memory (first part of the
 * staging buffer), the host collective into the second part, the result copied back. */

static int gpu_allgather(herd_backend_t *be, const void *send, void *recv, int64_t count,
                         int dtype)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (count == 0)
        return HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclResult_t r = NCCL.AllGather(send, recv, (size_t)count, nccl_type(dtype), g->comm,
                                        g->stream);
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclAllGather");
    }
#endif
    size_t part = (size_t)count * herd__dtype_size(dtype);
    if (part * (size_t)(g->size + 1) > g->pinned_cap)
        return herd__status_set(HERD_ERR_INTERNAL, "staging buffer smaller than its allgather");
    cudaError_t err = stage_in(g, send, part);
    char *all = (char *)g->pinned + part;
    /* Issued even when the copy failed: the other ranks are inside it. */
    int rc = g->host->allgather(g->host, g->pinned, all, count, dtype);
    return stage_out(g, recv, all, part * (size_t)g->size, rc, err);
}

/* `op` may be AVERAGE here (the coordinator passes it through for GPU memory): ncclAvg, or a
 * division on the host when staged. Counts that differ per rank (a row count that does not
 * divide) reduce the whole input into the fusion buffer with ncclAllReduce and keep this
 * rank's part: twice the traffic, but NCCL has no reduce-scatter-v. */
static int gpu_reducescatter(herd_backend_t *be, const void *send, void *recv,
                             const int64_t *counts, int dtype, int op)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    int me = herd__ctrl_rank(g->ctrl);
    int64_t total = 0, first = 0, mine = counts[me];
    int equal = 1;
    for (int r = 0; r < g->size; r++) {
        if (r < me)
            first += counts[r];
        total += counts[r];
        equal &= counts[r] == counts[0];
    }
    if (total == 0)
        return HERD_OK;
    size_t esize = herd__dtype_size(dtype);
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclResult_t r;
        if (equal) {
            r = NCCL.ReduceScatter(send, recv, (size_t)mine, nccl_type(dtype), nccl_op(op),
                                   g->comm, g->stream);
            return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclReduceScatter");
        }
        if ((size_t)total * esize > g->fusion_cap)
            return herd__status_set(HERD_ERR_INTERNAL, "GPU scratch smaller than its group");
        r = NCCL.AllReduce(send, g->fusion, (size_t)total, nccl_type(dtype), nccl_op(op),
                           g->comm, g->stream);
        if (r != ncclSuccess)
            return nccl_failed(r, "ncclAllReduce (uneven reduce-scatter)");
        if (mine == 0)
            return HERD_OK;
        cudaError_t err = CU.MemcpyAsync(recv, (char *)g->fusion + (size_t)first * esize,
                                         (size_t)mine * esize, cudaMemcpyDefault, g->stream);
        return err == cudaSuccess ? HERD_OK : cuda_failed(err, "copying a reduce-scatter part");
    }
#endif
    if ((size_t)(total + mine) * esize > g->pinned_cap)
        return herd__status_set(HERD_ERR_INTERNAL, "staging buffer smaller than its group");
    cudaError_t err = stage_in(g, send, (size_t)total * esize);
    char *part = (char *)g->pinned + (size_t)total * esize;
    int rc = g->host->reducescatter(g->host, g->pinned, part, counts, dtype,
                                    op == HERD_AVERAGE ? HERD_SUM : op);
    if (rc == HERD_OK && err == cudaSuccess && op == HERD_AVERAGE)
        herd__dtype_finish(dtype, part, (size_t)mine, g->size, 1.0);
    return stage_out(g, recv, part, (size_t)mine * esize, rc, err);
}

static int gpu_alltoall(herd_backend_t *be, const void *send, void *recv, int64_t count,
                        int dtype)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (count == 0)
        return HERD_OK;
    size_t block = (size_t)count * herd__dtype_size(dtype), bytes = block * (size_t)g->size;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclDataType_t type = nccl_type(dtype);
        ncclResult_t r = NCCL.GroupStart();
        for (int peer = 0; peer < g->size && r == ncclSuccess; peer++) {
            r = NCCL.Send((const char *)send + (size_t)peer * block, (size_t)count, type, peer,
                          g->comm, g->stream);
            if (r == ncclSuccess)
                r = NCCL.Recv((char *)recv + (size_t)peer * block, (size_t)count, type, peer,
                              g->comm, g->stream);
        }
        ncclResult_t end = NCCL.GroupEnd(); /* always closes the group it opened */
        if (r == ncclSuccess)
            r = end;
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclSend/ncclRecv (alltoall)");
    }
#endif
    if (2 * bytes > g->pinned_cap)
        return herd__status_set(HERD_ERR_INTERNAL, "staging buffer smaller than its alltoall");
    cudaError_t err = stage_in(g, send, bytes);
    char *out = (char *)g->pinned + bytes;
    int rc = g->host->alltoall(g->host, g->pinned, out, count, dtype);
    return stage_out(g, recv, out, bytes, rc, err);
}

/* ---- variable-size forms ---------------------------------------------------------------
 * The counts are exchanged on the host first (the coordinator), then the result is allocated
 * here in device memory (cudaMalloc, which may wait for the device: these forms cannot know
 * their size earlier), with staging room made at the same time, and every rank agrees that all
 * of that worked before anything is issued. */

static void *gpu_alloc_result(herd_backend_t *be, size_t bytes, size_t send_bytes)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    if (!use_nccl(g) && ensure_pinned(g, bytes + send_bytes) != HERD_OK)
        return NULL;
    void *p = NULL;
    cudaError_t err = CU.Malloc(&p, bytes);
    if (err != cudaSuccess) {
        CU.GetLastError(); /* out of memory is not sticky: do not leave it to the application */
        cuda_failed(err, "cudaMalloc of a variable-size result");
        return NULL;
    }
    return p;
}

int herd__gpu_free(void *ptr, int device)
{
    int rc = herd__gpu_load_cuda();
    if (rc != HERD_OK)
        return rc;
    device_guard_t guard;
    rc = enter_device(device, &guard);
    if (rc != HERD_OK)
        return rc;
    cudaError_t err = CU.Free(ptr);
    leave_device(&guard);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "herd_free: cudaFree");
}

/* NCCL: every rank broadcasts its part into its place, all in one group. */
static int gpu_allgatherv(herd_backend_t *be, const void *send, void *recv,
                          const int64_t *counts, const int64_t *displs, int dtype)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    int me = herd__ctrl_rank(g->ctrl);
    size_t esize = herd__dtype_size(dtype);
    int64_t total = 0;
    for (int r = 0; r < g->size; r++)
        total += counts[r];
    if (total == 0)
        return HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclDataType_t type = nccl_type(dtype);
        ncclResult_t r = NCCL.GroupStart();
        for (int root = 0; root < g->size && r == ncclSuccess; root++) {
            if (counts[root] == 0)
                continue;
            char *at = (char *)recv + (size_t)displs[root] * esize;
            r = NCCL.Broadcast(root == me ? send : at, at, (size_t)counts[root], type, root,
                               g->comm, g->stream);
        }
        ncclResult_t end = NCCL.GroupEnd();
        if (r == ncclSuccess)
            r = end;
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclBroadcast (allgatherv)");
    }
#endif
    size_t mine = (size_t)counts[me] * esize;
    if (mine + (size_t)total * esize > g->pinned_cap)
        return herd__status_set(HERD_ERR_INTERNAL, "staging buffer smaller than its allgatherv");
    cudaError_t err = mine ? stage_in(g, send, mine) : cudaSuccess;
    char *all = (char *)g->pinned + mine;
    int rc = g->host->allgatherv(g->host, g->pinned, all, counts, displs, dtype);
    return stage_out(g, recv, all, (size_t)total * esize, rc, err);
}

/* NCCL: a send and a receive per peer with data, in one group. */
static int gpu_alltoallv(herd_backend_t *be, const void *send, const int64_t *sendcounts,
                         const int64_t *sdispls, void *recv, const int64_t *recvcounts,
                         const int64_t *rdispls, int dtype)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    size_t esize = herd__dtype_size(dtype);
    int64_t sent = 0, got = 0;
    for (int r = 0; r < g->size; r++) {
        sent += sendcounts[r];
        got += recvcounts[r];
    }
#ifdef HERD_HAVE_NCCL
    if (use_nccl(g)) {
        ncclDataType_t type = nccl_type(dtype);
        ncclResult_t r = NCCL.GroupStart();
        for (int peer = 0; peer < g->size && r == ncclSuccess; peer++) {
            if (sendcounts[peer] > 0)
                r = NCCL.Send((const char *)send + (size_t)sdispls[peer] * esize,
                              (size_t)sendcounts[peer], type, peer, g->comm, g->stream);
            if (r == ncclSuccess && recvcounts[peer] > 0)
                r = NCCL.Recv((char *)recv + (size_t)rdispls[peer] * esize,
                              (size_t)recvcounts[peer], type, peer, g->comm, g->stream);
        }
        ncclResult_t end = NCCL.GroupEnd();
        if (r == ncclSuccess)
            r = end;
        return r == ncclSuccess ? HERD_OK : nccl_failed(r, "ncclSend/ncclRecv (alltoallv)");
    }
#endif
    if ((size_t)(sent + got) * esize > g->pinned_cap && sent + got > 0)
        return herd__status_set(HERD_ERR_INTERNAL, "staging buffer smaller than its alltoallv");
    cudaError_t err = sent ? stage_in(g, send, (size_t)sent * esize) : cudaSuccess;
    char *out = (char *)g->pinned + (size_t)sent * esize;
    int rc = g->host->alltoallv(g->host, g->pinned, sendcounts, sdispls, out, recvcounts,
                                rdispls, dtype);
    if (got == 0)
        return err != cudaSuccess ? cuda_failed(err, "staging a GPU tensor to host memory") : rc;
    return stage_out(g, recv, out, (size_t)got * esize, rc, err);
}

static void gpu_copy(void *be, void *dst, const void *src, size_t n)
{
    gpu_backend_t *g = be;
    /* The copy function cannot fail the group itself: its error is kept for gpu_finish.
     * cudaMemcpyDefault: managed memory is a valid source and destination too. */
    cudaError_t err = CU.MemcpyAsync(dst, src, n, cudaMemcpyDefault, g->stream);
    if (err != cudaSuccess && g->copy_error == cudaSuccess)
        g->copy_error = err;
}

/* Grows the device fusion buffer; called by gpu_before_group, before the agreement. It is made
 * at the largest fused group's size (HERD_FUSION_THRESHOLD), as Horovod's, so that no later group
 * drains the stream and reallocates it; at the group's own size when that much is not free (the
 * largest size is tried again at the next growth). Only an uneven reduce-scatter past the
 * threshold grows it further. */
static int grow_fusion(gpu_backend_t *g, size_t bytes)
{
    if (bytes <= g->fusion_cap)
        return HERD_OK;
    if (g->fusion != NULL) {
        /* Earlier groups may still use the old buffer. */
        int rc = drain_stream(g);
        if (rc != HERD_OK)
            return rc;
        cudaError_t err = CU.Free(g->fusion);
        g->fusion = NULL;
        g->fusion_cap = 0;
        if (err != cudaSuccess)
            return cuda_failed(err, "cudaFree of the GPU fusion buffer");
    }
    size_t got;
    cudaError_t err = alloc_most(CU.Malloc, &g->fusion,
                                 g->fusion_min > bytes ? g->fusion_min : bytes, bytes, &got);
    if (err != cudaSuccess) {
        CU.GetLastError(); /* out of memory is not sticky: do not leave it to the application */
        return cuda_failed(err, "cudaMalloc of the GPU fusion buffer");
    }
    g->fusion_cap = got;
    return HERD_OK;
}

static int gpu_fusion_buffer(herd_backend_t *be, size_t bytes, void **out)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    /* gpu_before_group sized it for this group, on every rank (all or none). */
    if (bytes > g->fusion_cap)
        return herd__status_set(HERD_ERR_INTERNAL, "GPU fusion buffer smaller than its group");
    *out = g->fusion;
    return HERD_OK;
}

/* Everything this rank must do before it may issue the group; a failure fails the group on every
 * rank through the agreement in gpu_before_group. */
static int prepare_group(gpu_backend_t *g, const uint32_t *ops, int64_t n, int64_t bytes,
                         int fused)
{
    if (g->broken)
        return herd__status_set(HERD_ERR_BACKEND, "%s", g->broken_why);
    int rc = enter_device(g->device, &g->guard);
    if (rc != HERD_OK)
        return rc;
    /* Buffers first: growing one waits for the stream, which must not include this group's
     * producers yet. */
    if (fused && bytes > 0 && (rc = grow_fusion(g, (size_t)bytes)) != HERD_OK)
        return rc;
    if (!use_nccl(g) && bytes > 0 && (rc = ensure_pinned(g, (size_t)bytes)) != HERD_OK)
        return rc;
    for (int64_t i = 0; i < n; i++) {
        cudaError_t err = CU.StreamWaitEvent(g->stream, events[ops[i]].ready, 0);
        if (err != cudaSuccess)
            return cuda_failed(err, "cudaStreamWaitEvent on a producer's event");
    }
    return HERD_OK;
}

static int gpu_before_group(herd_backend_t *be, const uint32_t *ops, int64_t n, int64_t bytes,
                            int fused, int local_status, int *scaled)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    int rc = local_status != HERD_OK ? local_status : prepare_group(g, ops, n, bytes, fused);
    char why[HERD_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rc == HERD_OK ? "" : herd__status_last());
    /* All or none: a rank that cannot issue the group must not leave the others inside it.
     * The second word ORs (inverted AND) "some rank scales a member". */
    uint64_t words[2] = {rc == HERD_OK, ~(uint64_t)(*scaled ? 1 : 0)};
    int crc = herd__ctrl_allreduce_band(g->ctrl, words, 2);
    if (crc != HERD_OK)
        return crc;
    uint64_t ok = words[0];
    *scaled = (~words[1] & 1) != 0;
    if (rc != HERD_OK)
        return herd__status_set(rc, "%s", why);
    if (!ok)
        return herd__status_set(HERD_ERR_BACKEND, "the GPU group failed on another rank before it "
                                                  "was issued (this rank was ready)");
    return HERD_OK;
}

static int64_t now_ms(void);

static int gpu_after_group(herd_backend_t *be, const uint32_t *ops, int64_t n)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    /* A failed packing copy fails the group (gpu_finish then waits for what was issued). */
    if (g->copy_error != cudaSuccess)
        return cuda_failed(g->copy_error, "cudaMemcpyAsync packing a fused group");
    int64_t seq = ++g->issue_seq, now = now_ms();
    for (int64_t i = 0; i < n; i++) {
        op_events_t *e = &events[ops[i]];
        cudaError_t err = CU.EventRecord(e->done, g->stream);
        if (err != cudaSuccess)
            return cuda_failed(err, "cudaEventRecord on herd's stream");
        e->seq = seq;
        e->issued_ms = now;
        atomic_store(&e->issued, 1);
    }
    leave_device(&g->guard); /* issued: the ops complete through gpu_poll_op */
    return HERD_OK;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Stops the GPU plane after a group that may never complete: NCCL's kernels are aborted, so the
 * stream drains, and every later GPU group fails. */
static void break_gpu(gpu_backend_t *g, const char *why)
{
    g->broken = 1;
    snprintf(g->broken_why, sizeof g->broken_why,
             "herd's GPU plane stopped after a failed collective: %s", why);
#ifdef HERD_HAVE_NCCL
    if (g->comm != NULL) {
        NCCL.CommAbort(g->comm);
        g->comm = NULL;
    }
#endif
    HERD_LOG_ERR("%s", g->broken_why);
}

/* Polls the group's completion event and NCCL's asynchronous error until the group completes,
 * NCCL reports an error, or the timeout passes. */
static int wait_group(gpu_backend_t *g)
{
    cudaError_t err = CU.EventRecord(g->group_done, g->stream);
    if (err != cudaSuccess)
        return cuda_failed(err, "cudaEventRecord after a GPU group");
    int64_t start = now_ms();
    long sleep_ns = 1000;
    for (;;) {
        err = CU.EventQuery(g->group_done);
        if (err == cudaSuccess)
            return HERD_OK;
        if (err != cudaErrorNotReady)
            return cuda_failed(err, "GPU collective");
#ifdef HERD_HAVE_NCCL
        ncclResult_t async = ncclSuccess;
        if (g->comm != NULL) {
            ncclResult_t r = NCCL.CommGetAsyncError(g->comm, &async);
            if (r != ncclSuccess)
                async = r;
        }
        if (async != ncclSuccess && async != ncclInProgress)
            return nccl_failed(async, "an NCCL collective (asynchronous error)");
#endif
        if (g->timeout_ms > 0 && now_ms() - start >= g->timeout_ms)
            return herd__status_set(HERD_ERR_BACKEND,
                                    "a GPU group did not complete within %.1f s "
                                    "(HERD_STALL_TIMEOUT_SECONDS): another rank failed or "
                                    "stopped inside the collective", (double)g->timeout_ms / 1e3);
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000)
            sleep_ns *= 2;
    }
}

/* Waits, bounded, until everything issued on herd's stream is complete. A failure stops the GPU
 * plane (abort), after which the stream drains. */
static int drain_stream(gpu_backend_t *g)
{
    if (g->broken)
        return herd__status_set(HERD_ERR_BACKEND, "%s", g->broken_why);
    int rc = wait_group(g);
    if (rc != HERD_OK) {
        break_gpu(g, herd__status_last());
        CU.StreamSynchronize(g->stream); /* aborted: it drains */
        return herd__status_set(HERD_ERR_BACKEND, "%s", g->broken_why);
    }
    g->completed_seq = g->issue_seq;
    return HERD_OK;
}

/* For a group that failed (issued or not): the caller's buffers are free once this returns. */
static int gpu_finish(herd_backend_t *be)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    int rc = g->broken ? HERD_OK : drain_stream(g);
    cudaError_t copy = g->copy_error;
    g->copy_error = cudaSuccess;
    if (rc == HERD_OK && copy != cudaSuccess)
        rc = cuda_failed(copy, "cudaMemcpyAsync packing a fused group");
    leave_device(&g->guard);
    return rc;
}

/* Ops are polled in issue order and one stream runs them in that order, so a completed op means
 * every earlier group completed. Called with herd's device current. */
static int poll_issued(gpu_backend_t *g, const op_events_t *e)
{
    cudaError_t err = CU.EventQuery(e->done);
    if (err == cudaSuccess) {
        g->completed_seq = e->seq;
        return HERD_OK;
    }
    int rc = HERD_INPROGRESS;
    if (err != cudaErrorNotReady)
        rc = cuda_failed(err, "GPU collective");
#ifdef HERD_HAVE_NCCL
    if (rc == HERD_INPROGRESS && g->comm != NULL) {
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = NCCL.CommGetAsyncError(g->comm, &async);
        if (r != ncclSuccess)
            async = r;
        if (async != ncclSuccess && async != ncclInProgress)
            rc = nccl_failed(async, "an NCCL collective (asynchronous error)");
    }
#endif
    if (rc == HERD_INPROGRESS && g->timeout_ms > 0 && now_ms() - e->issued_ms >= g->timeout_ms)
        rc = herd__status_set(HERD_ERR_BACKEND,
                              "a GPU group did not complete within %.1f s "
                              "(HERD_STALL_TIMEOUT_SECONDS): another rank failed or stopped "
                              "inside the collective", (double)g->timeout_ms / 1e3);
    if (rc == HERD_INPROGRESS)
        return rc;
    break_gpu(g, herd__status_last());
    CU.StreamSynchronize(g->stream); /* aborted: it drains, and the buffers are free after */
    return herd__status_set(HERD_ERR_BACKEND, "%s", g->broken_why);
}

static int gpu_poll_op(herd_backend_t *be, uint32_t op)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    const op_events_t *e = &events[op];
    if (e->seq <= g->completed_seq)
        return HERD_OK;
    if (g->broken)
        return herd__status_set(HERD_ERR_BACKEND, "%s", g->broken_why);
    /* Rounds run on application threads too: a runtime call on a thread without a context would
     * bind (or create) its runtime device's context, so herd's is made current for the poll. */
    device_guard_t guard;
    int rc = enter_device(g->device, &guard);
    if (rc == HERD_OK) {
        rc = poll_issued(g, e);
        leave_device(&guard);
    }
    return rc;
}

static void gpu_destroy(herd_backend_t *be)
{
    gpu_backend_t *g = (gpu_backend_t *)be;
    device_guard_t guard;
    int entered = enter_device(g->device, &guard) == HERD_OK;
#ifdef HERD_HAVE_NCCL
    if (g->comm != NULL)
        NCCL.CommDestroy(g->comm);
#endif
    if (g->stream != NULL)
        CU.StreamSynchronize(g->stream);
    if (g->fusion != NULL)
        CU.Free(g->fusion);
    if (g->pinned != NULL)
        CU.FreeHost(g->pinned);
    if (g->group_done != NULL)
        CU.EventDestroy(g->group_done);
    if (g->stream != NULL)
        CU.StreamDestroy(g->stream);
    if (entered)
        leave_device(&guard);
    free(g);
}

/* Local set-up; returns HERD_OK or an error with the message set. */
static int open_device(gpu_backend_t *g)
{
    int rc = herd__gpu_load_cuda();
    if (rc != HERD_OK)
        return rc;
    if (visible_devices() == 0)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED, "no CUDA device is visible");
    device_guard_t guard;
    rc = enter_device(g->device, &guard);
    if (rc != HERD_OK)
        return rc;
    cudaError_t err = CU.StreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
    if (err == cudaSuccess)
        err = CU.EventCreateWithFlags(&g->group_done, cudaEventDisableTiming);
    leave_device(&guard);
    return err == cudaSuccess ? HERD_OK : cuda_failed(err, "opening the CUDA device");
}

static int fail_create(gpu_backend_t *g, int rc)
{
    /* Remembered, alike on every rank (the failure was agreed): later groups fail at once. */
    create_failed = rc;
    snprintf(create_why, sizeof create_why, "%s", herd__status_last());
    gpu_destroy(&g->base);
    return herd__status_set(rc, "%s", create_why);
}

int herd__gpu_backend_create(herd_backend_t **out, herd_ctrl_t *ctrl, const herd_config_t *cfg,
                             int device, herd_backend_t *host)
{
    if (create_failed != HERD_OK)
        return herd__status_set(create_failed, "%s", create_why);
    gpu_backend_t *g = calloc(1, sizeof *g);
    if (g == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the GPU backend");
    g->base = (herd_backend_t){.name = "gpu", .allreduce = gpu_allreduce,
                               .allreduce_scaled = gpu_allreduce_scaled,
                               .broadcast = gpu_broadcast, .allgather = gpu_allgather,
                               .reducescatter = gpu_reducescatter,
                               .alltoall = gpu_alltoall, .allgatherv = gpu_allgatherv,
                               .alltoallv = gpu_alltoallv, .alloc_result = gpu_alloc_result,
                               .copy = gpu_copy,
                               .fusion_buffer = gpu_fusion_buffer, .finish = gpu_finish,
                               .before_group = gpu_before_group,
                               .after_group = gpu_after_group, .poll_op = gpu_poll_op,
                               .destroy = gpu_destroy};
    g->device = device;
    g->host = host;
    g->ctrl = ctrl;
    g->size = herd__ctrl_size(ctrl);
    g->timeout_ms = cfg->stall_timeout_ms;
    g->fusion_min = (size_t)herd__config_group_limit(cfg, 1);
    /* Every rank must agree before any collective of the GPU plane: one rank without a device
     * must fail the group everywhere, not leave the others inside NCCL. */
    int rc = open_device(g);
#ifdef HERD_HAVE_NCCL
    int want_nccl = cfg->gpu_backend != HERD_GPU_BACKEND_MPI;
    if (rc == HERD_OK && want_nccl)
        rc = herd__gpu_load_nccl();
#endif
    char why[HERD_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rc == HERD_OK ? "" : herd__status_last());
    uint64_t ok = rc == HERD_OK ? 1 : 0;
    int crc = herd__ctrl_allreduce_band(ctrl, &ok, 1);
    if (crc != HERD_OK || !ok) {
        if (crc != HERD_OK) {
            gpu_destroy(&g->base);
            return crc;
        }
        herd__status_set(rc != HERD_OK ? rc : HERD_ERR_NOT_SUPPORTED,
                         "the GPU data plane could not start on every rank%s%s",
                         why[0] ? "; here: " : " (this rank was fine)", why);
        return fail_create(g, rc != HERD_OK ? rc : HERD_ERR_NOT_SUPPORTED);
    }
#ifdef HERD_HAVE_NCCL
    if (want_nccl) {
        /* Rank 0's id travels with its status, so a failure there stops every rank here. */
        struct {
            int32_t result;
            ncclUniqueId id;
        } boot;
        memset(&boot, 0, sizeof boot);
        if (herd__ctrl_rank(ctrl) == 0)
            boot.result = (int32_t)NCCL.GetUniqueId(&boot.id);
        crc = herd__ctrl_bcast(ctrl, &boot, sizeof boot, 0);
        ncclResult_t r = (ncclResult_t)boot.result;
        device_guard_t guard;
        int entered = 0;
        if (r == ncclSuccess && crc == HERD_OK) {
            entered = enter_device(g->device, &guard) == HERD_OK;
            r = entered ? NCCL.CommInitRank(&g->comm, g->size, boot.id, herd__ctrl_rank(ctrl))
                        : ncclInvalidUsage;
        }
        if (entered)
            leave_device(&guard);
        /* All or none: a rank without a communicator must not leave the others in NCCL. */
        uint64_t all = r == ncclSuccess && crc == HERD_OK;
        if (crc == HERD_OK)
            crc = herd__ctrl_allreduce_band(ctrl, &all, 1);
        if (crc != HERD_OK || !all) {
            if (r == ncclSuccess && g->comm != NULL)
                NCCL.CommDestroy(g->comm);
            g->comm = NULL;
            if (crc != HERD_OK) {
                gpu_destroy(&g->base);
                return crc;
            }
            if (r != ncclSuccess)
                nccl_failed(r, "ncclCommInitRank");
            else
                herd__status_set(HERD_ERR_BACKEND, "ncclCommInitRank failed on another rank");
            return fail_create(g, HERD_ERR_BACKEND);
        }
    }
#endif
    HERD_LOG_INF("GPU data plane on CUDA device %d: %s", device,
                 use_nccl(g) ? "NCCL" : "staged through host memory and MPI");
    *out = &g->base;
    return HERD_OK;
}
