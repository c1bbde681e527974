/* api.c - every public entry point: argument checks and state checks, then hand-off to the
 * runtime. No MPI here. Each check names the argument and its value. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "backend/gpu.h"
#include "dtype.h"
#include "herd.h"
#include "runtime.h"
#include "status.h"
#include "util/clock.h"

int herd_init(void)
{
    return herd__runtime_init();
}

int herd_shutdown(void)
{
    return herd__runtime_shutdown();
}

int herd_initialized(void)
{
    return atomic_load(&herd__runtime()->state) == HERD_STATE_RUNNING;
}

int herd_rank(void) { return atomic_load(&herd__runtime()->rank); }
int herd_size(void) { return atomic_load(&herd__runtime()->size); }
int herd_local_rank(void) { return atomic_load(&herd__runtime()->local_rank); }
int herd_local_size(void) { return atomic_load(&herd__runtime()->local_size); }

int herd_abi_version(void)
{
    return HERD_ABI_VERSION;
}

const char *herd_version(void)
{
    return HERD_VERSION_STRING;
}

/* Checks a tensor name: 1 to HERD_MAX_NAME_LEN bytes. */
static int check_name(const char *name, size_t *len_out)
{
    if (name == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "name is NULL");
    size_t len = strnlen(name, HERD_MAX_NAME_LEN + 1);
    if (len == 0)
        return herd__status_set(HERD_ERR_INVALID_ARG, "name is empty");
    if (len > HERD_MAX_NAME_LEN)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "name '%.40s...' is longer than %d bytes", name,
                                HERD_MAX_NAME_LEN);
    *len_out = len;
    return HERD_OK;
}

static int check_device(const char *name, int device)
{
    if (device < HERD_DEVICE_CPU)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': device %d is neither HERD_DEVICE_CPU (-1) nor a "
                                "CUDA ordinal", name, device);
    return herd__gpu_check_buffer(name, "device", NULL, device);
}

static int check_buffer(const char *name, const char *what, const void *buf, int64_t count,
                        int dtype, int device)
{
    if (count == 0)
        return HERD_OK;
    if (buf == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "tensor '%s': %s is NULL with count %lld",
                                name, what, (long long)count);
    size_t esize = herd__dtype_size(dtype);
    if ((uintptr_t)buf % esize != 0)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': %s %p is not aligned to %zu bytes for %s", name,
                                what, buf, esize, herd__dtype_name(dtype));
    return herd__gpu_check_buffer(name, what, buf, device);
}

static int check_count_dtype(const char *name, int64_t count, int dtype)
{
    if (!herd__dtype_valid(dtype))
        return herd__status_set(HERD_ERR_INVALID_ARG, "tensor '%s': unknown dtype %d", name,
                                dtype);
    if (count < 0)
        return herd__status_set(HERD_ERR_INVALID_ARG, "tensor '%s': count %lld is negative",
                                name, (long long)count);
    if (count > INT64_MAX / (int64_t)herd__dtype_size(dtype))
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': count %lld of %s overflows the byte size", name,
                                (long long)count, herd__dtype_name(dtype));
    return HERD_OK;
}

/* Out of place, the input must not overlap the output: the result would depend on the order
 * MPI reads and writes. */
static int check_overlap(const char *name, const void *send, const void *recv, int64_t bytes)
{
    if (send == recv || bytes == 0)
        return HERD_OK;
    uintptr_t s = (uintptr_t)send, r = (uintptr_t)recv, n = (uintptr_t)bytes;
    if (s < r + n && r < s + n)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': sendbuf and recvbuf overlap without being equal",
                                name);
    return HERD_OK;
}

/* The CUDA stream (cudaStream_t) that produces this thread's GPU data; NULL = legacy default. */
static _Thread_local void *tls_cuda_stream;

/* 1 when this thread's last wait ran the rounds it needed itself: it will likely do so again,
 * so its next submission need not wake the coordinator thread (see herd__queue_push). */
static _Thread_local int tls_drives_own_waits;

/* Declares the name, claims it for this op, takes a handle slot and queues the request. */
static int submit(herd_runtime_t *rt, const char *name, size_t name_len, herd_request_t *proto,
                  herd_handle_t *handle_out)
{
    herd_tensor_t *t = NULL;
    int rc = herd__registry_declare(&rt->registry, name, name_len, &t);
    if (rc != HERD_OK)
        return rc;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&t->inflight, &idle, 1))
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "tensor '%s' is already in flight on this rank: wait on its "
                                "handle before submitting it again", name);
    herd_handle_t handle = 0;
    uint32_t index = 0;
    rc = herd__handles_alloc(&rt->handles, &handle, &index);
    if (rc != HERD_OK) {
        atomic_store(&t->inflight, 0);
        return rc;
    }
    if (proto->device >= 0) {
        rc = herd__gpu_record_ready(index, proto->device, tls_cuda_stream);
        if (rc != HERD_OK) {
            herd__handles_cancel(&rt->handles, index);
            atomic_store(&t->inflight, 0);
            return rc;
        }
    }
    herd_request_t *r = herd__handles_request(&rt->handles, index);
    *r = *proto;
    r->tensor = t;
    r->submit_ns = herd__clock_ns();
    herd__queue_push(&rt->queue, index, tls_drives_own_waits);
    *handle_out = handle;
    return HERD_OK;
}

/* The checks every submission starts with; on HERD_OK the caller is inside runtime_enter. */
static int begin_submit(const char *name, herd_handle_t *handle_out, size_t *name_len,
                        herd_runtime_t **rt)
{
    if (handle_out == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "handle_out is NULL");
    *handle_out = 0;
    int rc = check_name(name, name_len);
    if (rc != HERD_OK)
        return rc;
    *rt = herd__runtime();
    return herd__runtime_enter(*rt);
}

int herd_push_pull(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                   int dtype, int op, int device, herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    rc = check_count_dtype(name, count, dtype);
    if (rc == HERD_OK && !herd__op_valid(op))
        rc = herd__status_set(HERD_ERR_INVALID_ARG, "tensor '%s': unknown op %d", name, op);
    if (rc == HERD_OK)
        rc = check_device(name, device);
    if (rc == HERD_OK)
        rc = check_buffer(name, "sendbuf", sendbuf, count, dtype, device);
    if (rc == HERD_OK)
        rc = check_buffer(name, "recvbuf", recvbuf, count, dtype, device);
    if (rc == HERD_OK)
        rc = check_overlap(name, sendbuf, recvbuf, count * (int64_t)herd__dtype_size(dtype));
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_ALLREDUCE, .dtype = dtype, .op = op,
                                .root = -1, .device = device, .count = count,
                                .sendbuf = sendbuf, .recvbuf = recvbuf};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    herd__runtime_leave(rt);
    return rc;
}

int herd_broadcast(const char *name, void *buf, int64_t count, int dtype, int root, int device,
                   herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    int size = atomic_load(&rt->size);
    rc = check_count_dtype(name, count, dtype);
    if (rc == HERD_OK && (root < 0 || root >= size))
        rc = herd__status_set(HERD_ERR_INVALID_ARG,
                              "tensor '%s': root %d is not a rank (there are %d ranks)", name,
                              root, size);
    if (rc == HERD_OK)
        rc = check_device(name, device);
    if (rc == HERD_OK)
        rc = check_buffer(name, "buf", buf, count, dtype, device);
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_BROADCAST, .dtype = dtype, .op = HERD_SUM,
                                .root = root, .device = device, .count = count,
                                .sendbuf = buf, .recvbuf = buf};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    herd__runtime_leave(rt);
    return rc;
}

int herd_declare_tensor(const char *name, int64_t *key_out)
{
    if (key_out == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "key_out is NULL");
    size_t name_len = 0;
    int rc = check_name(name, &name_len);
    if (rc != HERD_OK)
        return rc;
    herd_runtime_t *rt = herd__runtime();
    rc = herd__runtime_enter(rt);
    if (rc != HERD_OK)
        return rc;
    herd_tensor_t *t = NULL;
    rc = herd__registry_declare(&rt->registry, name, name_len, &t);
    if (rc == HERD_OK)
        *key_out = t->key;
    herd__runtime_leave(rt);
    return rc;
}

/* Handles outlive shutdown (the table is kept), so only "never initialised" is refused. */
static int check_handles_exist(herd_runtime_t *rt)
{
    if (!atomic_load(&rt->handles_made))
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "herd is not initialised: call herd_init first");
    return HERD_OK;
}

/* A request queued without waking the coordinator thread (see herd__queue_push) must not wait
 * for its idle timeout once somebody asks about it. */
static void flush_submissions(herd_runtime_t *rt)
{
    if (herd__runtime_enter(rt) == HERD_OK) {
        herd__queue_flush(&rt->queue);
        herd__runtime_leave(rt);
    }
}

int herd_poll_handle(herd_handle_t handle)
{
    herd_runtime_t *rt = herd__runtime();
    int rc = check_handles_exist(rt);
    if (rc != HERD_OK)
        return rc;
    rc = herd__handles_poll(&rt->handles, handle);
    if (rc == HERD_INPROGRESS)
        flush_submissions(rt);
    return rc;
}

int herd_wait_handle(herd_handle_t handle, int64_t timeout_ms)
{
    herd_runtime_t *rt = herd__runtime();
    int rc = check_handles_exist(rt);
    if (rc != HERD_OK)
        return rc;
    if (timeout_ms < -1)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "timeout_ms %lld is invalid: use -1 (forever) or >= 0",
                                (long long)timeout_ms);
    /* A wait without a deadline may run the rounds its operation needs on this thread, which
     * saves the two thread wakes of a hand-off. A wait with a deadline never does: it must be
     * able to return on time even if a peer stops answering inside an MPI call. */
    int drove = 0;
    while (timeout_ms < 0 && herd__handles_poll(&rt->handles, handle) == HERD_INPROGRESS &&
           herd__runtime_enter(rt) == HERD_OK) {
        int ran = herd__coordinator_drive(rt->coordinator, handle);
        herd__runtime_leave(rt);
        if (!ran)
            break;
        drove = 1;
    }
    int pending = herd__handles_poll(&rt->handles, handle) == HERD_INPROGRESS;
    tls_drives_own_waits = drove && !pending;
    if (pending)
        flush_submissions(rt);
    return herd__handles_wait(&rt->handles, handle, timeout_ms);
}

int herd_set_cuda_stream(void *stream)
{
    tls_cuda_stream = stream;
    return HERD_OK;
}

int herd_handle_stream_wait(herd_handle_t handle, void *stream)
{
    herd_runtime_t *rt = herd__runtime();
    int rc = check_handles_exist(rt);
    if (rc != HERD_OK)
        return rc;
    /* Block only until herd has issued the op on its own stream, never until it completes. */
    for (;;) {
        int status = herd__handles_poll(&rt->handles, handle);
        if (status < 0)
            return status;
        uint32_t index = herd__handles_index(handle);
        if (herd__handles_request(&rt->handles, index)->device < 0)
            return herd__status_set(HERD_ERR_INVALID_ARG,
                                    "handle %lld is a host operation: there is no GPU work for a "
                                    "stream to wait on", (long long)handle);
        rc = herd__gpu_stream_wait(index, stream);
        if (rc != HERD_INPROGRESS)
            return rc;
        if (status == HERD_OK)
            return HERD_OK; /* complete before it was marked issued: nothing to wait for */
        flush_submissions(rt);
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 50000};
        nanosleep(&pause, NULL);
    }
}
