/* fake_cuda.c - a stand-in for libcudart, libcuda and libnccl, so the GPU plane's logic (pointer
 * checks, device switching, all-or-none agreement, completion polling, abort) runs on a machine
 * without a GPU. herd is pointed at it with HERD_CUDART_LIBRARY, HERD_CUDA_DRIVER_LIBRARY and
 * HERD_NCCL_LIBRARY; the test programs link it in place of libcudart.
 *
 * The model: "device memory" is host memory from calloc, remembered with its device so that
 * cuPointerGetAttributes answers like the driver. Every stream operation runs at once on the
 * calling thread, so events complete at once, except after a collective made to hang
 * (herd_fake_cuda_inject("nccl_hang", 1)): its stream then stays busy, and events recorded on it
 * stay not ready, until ncclCommAbort. NCCL collectives are MPI collectives on a duplicate of
 * MPI_COMM_WORLD (fake device memory is host memory). Contexts are one token per device, made
 * "active" by cudaSetDevice as CUDA >= 12 does, and current per thread.
 *
 * HERD_FAKE_CUDA_DEVICES sets how many devices there are (default 1); HERD_FAKE_NCCL_VERSION the
 * version ncclGetVersion reports (default 22809). Failures are injected per process with
 * herd_fake_cuda_inject (see below).
 */
#define _POSIX_C_SOURCE 200809L
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_cuda.h"

enum { MAX_DEVICES = 8, MAX_ALLOCS = 4096 };

/* ---- injection -------------------------------------------------------------------------- */

static atomic_long fail_malloc_min_bytes; /* cudaMalloc of at least this many bytes fails (0 off) */
static atomic_int fail_stream_wait;       /* cudaStreamWaitEvent fails */
static atomic_int nccl_hang;              /* collectives never complete (until abort) */
static atomic_int nccl_async_error;       /* ncclCommGetAsyncError reports an error */
static atomic_int aborted;                /* ncclCommAbort was called */
static atomic_long collective_delay_ms;   /* a collective keeps its stream busy this long */
static atomic_long malloc_refused;        /* cudaMallocs failed by fail_malloc_min_bytes */

int herd_fake_cuda_inject(const char *what, long value)
{
    if (strcmp(what, "fail_malloc_min_bytes") == 0)
        atomic_store(&fail_malloc_min_bytes, value);
    else if (strcmp(what, "fail_stream_wait") == 0)
        atomic_store(&fail_stream_wait, (int)value);
    else if (strcmp(what, "nccl_hang") == 0)
        atomic_store(&nccl_hang, (int)value);
    else if (strcmp(what, "collective_delay_ms") == 0)
        atomic_store(&collective_delay_ms, value);
    else if (strcmp(what, "nccl_async_error") == 0)
        atomic_store(&nccl_async_error, (int)value);
    else
        return -1;
    return 0;
}

int herd_fake_cuda_aborted(void) { return atomic_load(&aborted); }

/* ---- devices and contexts ----------------------------------------------------------------- */

static int ctx_token[MAX_DEVICES]; /* a context is the address of its device's token */
static atomic_int primary_active[MAX_DEVICES];
static _Thread_local CUcontext current;   /* this thread's current context */
static _Thread_local int runtime_device;  /* cudaGetDevice without a context */

static int ndevices(void)
{
    const char *v = getenv("HERD_FAKE_CUDA_DEVICES");
    int n = v != NULL ? atoi(v) : 1;
    return n < 0 ? 0 : n > MAX_DEVICES ? MAX_DEVICES : n;
}

static int device_of_ctx(CUcontext ctx)
{
    for (int d = 0; d < MAX_DEVICES; d++)
        if ((void *)ctx == (void *)&ctx_token[d])
            return d;
    return -1;
}

int herd_fake_cuda_primary_active(int device)
{
    return device >= 0 && device < MAX_DEVICES && atomic_load(&primary_active[device]);
}

int herd_fake_cuda_current_device(void)
{
    return current == NULL ? -1 : device_of_ctx(current);
}

void herd_fake_cuda_unbind(void) { current = NULL; }

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = ndevices();
    return *count > 0 ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t cudaGetDevice(int *device)
{
    *device = current != NULL ? device_of_ctx(current) : runtime_device;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= ndevices())
        return cudaErrorInvalidDevice;
    atomic_store(&primary_active[device], 1); /* as CUDA >= 12: the primary context starts */
    current = (CUcontext)(void *)&ctx_token[device];
    runtime_device = device;
    return cudaSuccess;
}

static int current_device_for_work(void)
{
    if (current == NULL) /* the runtime binds its device's primary context on first use */
        cudaSetDevice(runtime_device);
    return device_of_ctx(current);
}

cudaError_t cudaGetLastError(void) { return cudaSuccess; }

const char *cudaGetErrorString(cudaError_t err)
{
    return err == cudaSuccess ? "no error" : "fake CUDA error";
}

const char *cudaGetErrorName(cudaError_t err)
{
    switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
    }
}

/* ---- memory ------------------------------------------------------------------------------- */

typedef struct alloc {
    char *base;
    size_t bytes;
    int device;   /* -1: pinned host */
    int managed;
} alloc_t;

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static alloc_t allocs[MAX_ALLOCS];

static cudaError_t remember(void **ptr, size_t bytes, int device, int managed)
{
    char *p = calloc(1, bytes > 0 ? bytes : 1);
    if (p == NULL)
        return cudaErrorMemoryAllocation;
    pthread_mutex_lock(&alloc_lock);
    int slot = -1;
    for (int i = 0; i < MAX_ALLOCS && slot < 0; i++)
        if (allocs[i].base == NULL)
            slot = i;
    if (slot >= 0)
        allocs[slot] = (alloc_t){p, bytes, device, managed};
    pthread_mutex_unlock(&alloc_lock);
    if (slot < 0) {
        free(p);
        return cudaErrorMemoryAllocation;
    }
    *ptr = p;
    return cudaSuccess;
}

static cudaError_t forget(void *ptr)
{
    if (ptr == NULL)
        return cudaSuccess;
    pthread_mutex_lock(&alloc_lock);
    int found = 0;
    for (int i = 0; i < MAX_ALLOCS && !found; i++) {
        if (allocs[i].base == ptr) {
            allocs[i].base = NULL;
            found = 1;
        }
    }
    pthread_mutex_unlock(&alloc_lock);
    if (!found)
        return cudaErrorInvalidValue;
    free(ptr);
    return cudaSuccess;
}

static int lookup(const void *p, alloc_t *out)
{
    int found = 0;
    pthread_mutex_lock(&alloc_lock);
    for (int i = 0; i < MAX_ALLOCS && !found; i++) {
        const char *b = allocs[i].base;
        size_t n = allocs[i].bytes > 0 ? allocs[i].bytes : 1;
        if (b != NULL && (const char *)p >= b && (const char *)p < b + n) {
            *out = allocs[i];
            found = 1;
        }
    }
    pthread_mutex_unlock(&alloc_lock);
    return found;
}

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    long min = atomic_load(&fail_malloc_min_bytes);
    if (min > 0 && bytes >= (size_t)min) {
        atomic_fetch_add(&malloc_refused, 1);
        return cudaErrorMemoryAllocation;
    }
    return remember(ptr, bytes, current_device_for_work(), 0);
}

cudaError_t cudaMallocManaged(void **ptr, size_t bytes, unsigned int flags)
{
    (void)flags;
    return remember(ptr, bytes, current_device_for_work(), 1);
}

cudaError_t cudaFree(void *ptr)
{
    current_device_for_work();
    return forget(ptr);
}

cudaError_t cudaMallocHost(void **ptr, size_t bytes) { return remember(ptr, bytes, -1, 0); }
cudaError_t cudaFreeHost(void *ptr) { return forget(ptr); }

CUresult cuInit(unsigned int flags)
{
    (void)flags;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (ordinal < 0 || ordinal >= ndevices())
        return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    if (dev < 0 || dev >= ndevices())
        return CUDA_ERROR_INVALID_DEVICE;
    *flags = 0;
    *active = atomic_load(&primary_active[dev]);
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *ctx)
{
    *ctx = current;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx)
{
    if (ctx != NULL && device_of_ctx(ctx) < 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    current = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetDevice(CUdevice *device)
{
    if (current == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    *device = device_of_ctx(current);
    return CUDA_SUCCESS;
}

CUresult cuPointerGetAttributes(unsigned int n, CUpointer_attribute *attributes, void **data,
                                CUdeviceptr ptr)
{
    alloc_t a;
    int known = lookup((const void *)(uintptr_t)ptr, &a);
    for (unsigned int i = 0; i < n; i++) {
        switch (attributes[i]) {
        case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
            *(unsigned int *)data[i] = !known ? 0u
                                       : a.device < 0 ? (unsigned int)CU_MEMORYTYPE_HOST
                                                      : (unsigned int)CU_MEMORYTYPE_DEVICE;
            break;
        case CU_POINTER_ATTRIBUTE_IS_MANAGED:
            *(unsigned int *)data[i] = known && a.managed;
            break;
        case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
            *(int *)data[i] = known ? a.device : -2;
            break;
        default:
            return CUDA_ERROR_INVALID_VALUE;
        }
    }
    return CUDA_SUCCESS;
}

/* ---- streams and events ------------------------------------------------------------------- */

typedef struct fake_stream {
    atomic_int busy;          /* a hung collective was enqueued and not aborted */
    atomic_llong busy_until;  /* a delayed collective runs until then (ms, monotonic) */
} fake_stream_t;

typedef struct fake_event {
    fake_stream_t *stream; /* recorded after a hung collective on this stream: never ready */
    int after_hang;
    long long ready_at; /* ms: recorded after a delayed collective */
} fake_event_t;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int stream_busy(fake_stream_t *s)
{
    return atomic_load(&s->busy) || now_ms() < atomic_load(&s->busy_until);
}

static fake_stream_t legacy_stream;
static atomic_int streams_created;

int herd_fake_cuda_streams_created(void) { return atomic_load(&streams_created); }

long herd_fake_cuda_malloc_refused(void) { return atomic_load(&malloc_refused); }
enum { MAX_STREAMS = 256 };
static fake_stream_t *streams[MAX_STREAMS];
static pthread_mutex_t stream_lock = PTHREAD_MUTEX_INITIALIZER;

static fake_stream_t *stream_of(cudaStream_t s)
{
    /* NULL, cudaStreamLegacy (1) and cudaStreamPerThread (2): the default stream. */
    return (uintptr_t)s <= 2 ? &legacy_stream : (fake_stream_t *)(void *)s;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    (void)flags;
    atomic_fetch_add(&streams_created, 1);
    fake_stream_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cudaErrorMemoryAllocation;
    pthread_mutex_lock(&stream_lock);
    for (int i = 0; i < MAX_STREAMS; i++) {
        if (streams[i] == NULL) {
            streams[i] = s;
            break;
        }
    }
    pthread_mutex_unlock(&stream_lock);
    *stream = (cudaStream_t)(void *)s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    fake_stream_t *s = stream_of(stream);
    if (s == &legacy_stream)
        return cudaErrorInvalidResourceHandle;
    pthread_mutex_lock(&stream_lock);
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i] == s)
            streams[i] = NULL;
    pthread_mutex_unlock(&stream_lock);
    free(s);
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    return stream_busy(stream_of(stream)) ? cudaErrorNotReady : cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    /* Like the real one: no bound. herd must only call it once the stream can drain. */
    fake_stream_t *s = stream_of(stream);
    while (stream_busy(s)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    for (;;) {
        int busy = stream_busy(&legacy_stream);
        pthread_mutex_lock(&stream_lock);
        for (int i = 0; i < MAX_STREAMS; i++)
            busy |= streams[i] != NULL && stream_busy(streams[i]);
        pthread_mutex_unlock(&stream_lock);
        if (!busy)
            return cudaSuccess;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    (void)flags;
    fake_event_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        return cudaErrorMemoryAllocation;
    *event = (cudaEvent_t)(void *)e;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    free(event);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    fake_event_t *e = (fake_event_t *)(void *)event;
    e->stream = stream_of(stream);
    e->after_hang = atomic_load(&e->stream->busy);
    e->ready_at = atomic_load(&e->stream->busy_until);
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event)
{
    fake_event_t *e = (fake_event_t *)(void *)event;
    if (e->after_hang && atomic_load(&e->stream->busy))
        return cudaErrorNotReady;
    return now_ms() < e->ready_at ? cudaErrorNotReady : cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    (void)stream;
    (void)event;
    (void)flags;
    return atomic_load(&fail_stream_wait) ? cudaErrorInvalidResourceHandle : cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    (void)kind;
    (void)stream;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    return cudaMemcpyAsync(dst, src, bytes, kind, NULL);
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes)
{
    memset(dst, value, bytes);
    return cudaSuccess;
}

/* ---- NCCL over MPI ------------------------------------------------------------------------ */

struct ncclComm {
    MPI_Comm comm;
    int rank, size;
};

ncclResult_t ncclGetVersion(int *version)
{
    const char *v = getenv("HERD_FAKE_NCCL_VERSION");
    *version = v != NULL ? atoi(v) : 22809;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t result)
{
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "unhandled system error (fake)";
    case ncclRemoteError: return "remote process exited or there was a network error (fake)";
    case ncclInvalidArgument: return "invalid argument (fake)";
    default: return "fake NCCL error";
    }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "fake-nccl-%ld", (long)time(NULL));
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
    (void)id;
    struct ncclComm *c = calloc(1, sizeof *c);
    if (c == NULL)
        return ncclSystemError;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &c->comm) != MPI_SUCCESS) {
        free(c);
        return ncclSystemError;
    }
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    if (c->rank != rank || c->size != nranks) {
        free(c);
        return ncclInvalidArgument;
    }
    atomic_store(&aborted, 0);
    *comm = c;
    return ncclSuccess;
}

/* The duplicate is not freed: MPI_Comm_free is collective, and an aborted comm's peers may not
 * call it. A test process leaks one communicator. */
ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    free(comm);
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm)
{
    atomic_store(&aborted, 1);
    pthread_mutex_lock(&stream_lock);
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i] != NULL)
            atomic_store(&streams[i]->busy, 0);
    pthread_mutex_unlock(&stream_lock);
    atomic_store(&legacy_stream.busy, 0);
    free(comm);
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error)
{
    (void)comm;
    *async_error = atomic_load(&nccl_async_error) ? ncclRemoteError : ncclSuccess;
    return ncclSuccess;
}

static MPI_Datatype mpi_type(ncclDataType_t t)
{
    switch (t) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    default: return MPI_DATATYPE_NULL; /* fp16/bf16: not modelled */
    }
}

/* PreMulSum ops: ncclNumOps + i, each with its scalar (float32 and float64 data only). */
enum { MAX_PREMUL = 64 };
static double premul[MAX_PREMUL];
static int premul_used[MAX_PREMUL];

ncclResult_t ncclRedOpCreatePreMulSum(ncclRedOp_t *op, void *scalar, ncclDataType_t type,
                                      ncclScalarResidence_t residence, ncclComm_t comm)
{
    (void)comm;
    if (residence != ncclScalarHostImmediate || (type != ncclFloat32 && type != ncclFloat64))
        return ncclInvalidArgument;
    for (int i = 0; i < MAX_PREMUL; i++) {
        if (premul_used[i])
            continue;
        premul_used[i] = 1;
        premul[i] = type == ncclFloat32 ? (double)*(float *)scalar : *(double *)scalar;
        *op = (ncclRedOp_t)(ncclNumOps + i);
        return ncclSuccess;
    }
    return ncclInternalError;
}

ncclResult_t ncclRedOpDestroy(ncclRedOp_t op, ncclComm_t comm)
{
    (void)comm;
    int i = (int)op - (int)ncclNumOps;
    if (i < 0 || i >= MAX_PREMUL || !premul_used[i])
        return ncclInvalidArgument;
    premul_used[i] = 0;
    return ncclSuccess;
}

static MPI_Op mpi_op(ncclRedOp_t op)
{
    if ((int)op >= (int)ncclNumOps && (int)op < (int)ncclNumOps + MAX_PREMUL &&
        premul_used[(int)op - (int)ncclNumOps])
        return MPI_SUM; /* the input is multiplied first, in ncclAllReduce */
    switch (op) {
    case ncclSum: case ncclAvg: return MPI_SUM;
    case ncclProd: return MPI_PROD;
    case ncclMin: return MPI_MIN;
    case ncclMax: return MPI_MAX;
    default: return MPI_OP_NULL;
    }
}

/* A hung collective: nothing is exchanged and the stream stays busy until ncclCommAbort. A
 * delayed one (collective_delay_ms) keeps it busy that long after the exchange. */
static int hang(cudaStream_t stream)
{
    long delay = atomic_load(&collective_delay_ms);
    if (delay > 0)
        atomic_store(&stream_of(stream)->busy_until, now_ms() + delay);
    if (!atomic_load(&nccl_hang))
        return 0;
    atomic_store(&stream_of(stream)->busy, 1);
    return 1;
}

/* ncclAvg: the sum divided by the number of ranks (the types the tests use). */
static ncclResult_t average(void *buf, size_t count, ncclDataType_t type, int size)
{
    for (size_t i = 0; i < count; i++) {
        if (type == ncclFloat32)
            ((float *)buf)[i] /= (float)size;
        else if (type == ncclFloat64)
            ((double *)buf)[i] /= size;
        else if (type == ncclInt32)
            ((int32_t *)buf)[i] /= size;
        else if (type == ncclInt64)
            ((int64_t *)buf)[i] /= size;
        else
            return ncclInvalidArgument;
    }
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream)
{
    MPI_Datatype t = mpi_type(type);
    if (t == MPI_DATATYPE_NULL || mpi_op(op) == MPI_OP_NULL || count > INT32_MAX)
        return ncclInvalidArgument;
    if (hang(stream))
        return ncclSuccess;
    if ((int)op >= (int)ncclNumOps) { /* PreMulSum: scale this rank's input into recv */
        double f = premul[(int)op - (int)ncclNumOps];
        for (size_t i = 0; i < count; i++) {
            if (type == ncclFloat32)
                ((float *)recv)[i] = ((const float *)send)[i] * (float)f;
            else
                ((double *)recv)[i] = ((const double *)send)[i] * f;
        }
        send = recv;
    }
    if (MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, t, mpi_op(op),
                      comm->comm) != MPI_SUCCESS)
        return ncclSystemError;
    return op == ncclAvg ? average(recv, count, type, comm->size) : ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t stream)
{
    MPI_Datatype t = mpi_type(type);
    if (t == MPI_DATATYPE_NULL || count > INT32_MAX)
        return ncclInvalidArgument;
    if (hang(stream))
        return ncclSuccess;
    int esize = 0;
    MPI_Type_size(t, &esize);
    if (comm->rank == root && send != recv)
        memmove(recv, send, count * (size_t)esize);
    return MPI_Bcast(recv, (int)count, t, root, comm->comm) == MPI_SUCCESS ? ncclSuccess
                                                                           : ncclSystemError;
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t send_count, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t stream)
{
    MPI_Datatype t = mpi_type(type);
    if (t == MPI_DATATYPE_NULL || send_count > INT32_MAX)
        return ncclInvalidArgument;
    if (hang(stream))
        return ncclSuccess;
    return MPI_Allgather(send, (int)send_count, t, recv, (int)send_count, t, comm->comm) ==
                   MPI_SUCCESS
               ? ncclSuccess
               : ncclSystemError;
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recv_count,
                               ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream)
{
    MPI_Datatype t = mpi_type(type);
    if (t == MPI_DATATYPE_NULL || mpi_op(op) == MPI_OP_NULL || recv_count > INT32_MAX)
        return ncclInvalidArgument;
    if (hang(stream))
        return ncclSuccess;
    if (MPI_Reduce_scatter_block(send, recv, (int)recv_count, t, mpi_op(op), comm->comm) !=
        MPI_SUCCESS)
        return ncclSystemError;
    return op == ncclAvg ? average(recv, recv_count, type, comm->size) : ncclSuccess;
}

/* Point to point runs eagerly (MPI_Sendrecv pairs are not modelled): a send must be matched by
 * the peer's receive in the same order, which is what herd's grouped exchanges do per pair. */
ncclResult_t ncclSend(const void *send, size_t count, ncclDataType_t type, int peer,
                      ncclComm_t comm, cudaStream_t stream)
{
    MPI_Datatype t = mpi_type(type);
    if (t == MPI_DATATYPE_NULL || count > INT32_MAX)
        return ncclInvalidArgument;
    if (hang(stream))
        return ncclSuccess;
    return MPI_Send(send, (int)count, t, peer, 0, comm->comm) == MPI_SUCCESS ? ncclSuccess
                                                                            : ncclSystemError;
}

ncclResult_t ncclRecv(void *recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream)
{
    MPI_Datatype t = mpi_type(type);
    if (t == MPI_DATATYPE_NULL || count > INT32_MAX)
        return ncclInvalidArgument;
    if (hang(stream))
        return ncclSuccess;
    return MPI_Recv(recv, (int)count, t, peer, 0, comm->comm, MPI_STATUS_IGNORE) == MPI_SUCCESS
               ? ncclSuccess
               : ncclSystemError;
}

/* Every call above runs eagerly, so a group has nothing to defer. (nccl.h declares these
 * without a parameter list.) */
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);
ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }
