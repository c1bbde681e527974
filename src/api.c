/* api.c - every public entry point: argument checks and state checks, then hand-off to the
 * runtime. No MPI here. Each check names the argument and its value. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/gpu.h"
#include "counters.h"
#include "dtype.h"
#include "herd.h"
#include "op_kind.h"
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

int herd_counter(const char *name, int64_t *value_out)
{
    if (name == NULL || value_out == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "herd_counter: %s is NULL",
                                name == NULL ? "name" : "value_out");
    int id = herd__counter_find(name);
    if (id < 0)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "herd_counter: no counter named '%.64s' (herd_counter_name lists "
                                "them)", name);
    *value_out = herd__counter_get((herd_counter_id_t)id);
    return HERD_OK;
}

const char *herd_counter_name(int index)
{
    return herd__counter_name(index);
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

/* herd_group_start/end: this thread's open group. Members are allocated and filled at once but
 * queued together at the outermost end; the index list grows off the steady-state path. */
static _Thread_local int tls_group_depth;
static _Thread_local uint32_t *tls_group_ops;
static _Thread_local uint32_t tls_group_len, tls_group_cap;
static _Thread_local int tls_group_failed;
static _Thread_local char tls_group_why[HERD_MAX_NAME_LEN + 200];

/* The group list is freed when its thread ends: a key whose destructor owns it. */
static pthread_once_t group_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t group_key;
static int group_key_ok;

static void make_group_key(void)
{
    group_key_ok = pthread_key_create(&group_key, free) == 0;
}

static void group_failed(const char *name, int rc)
{
    if (tls_group_depth == 0 || tls_group_failed)
        return;
    tls_group_failed = 1;
    snprintf(tls_group_why, sizeof tls_group_why,
             "herd_group_end: the group was not submitted because its member '%.*s' failed "
             "(%s)", HERD_MAX_NAME_LEN, name != NULL ? name : "(null)", herd_status_name(rc));
}

/* Declares the name, claims it for this op, takes a handle slot and queues the request (or,
 * inside a group, keeps it for herd_group_end). */
static int submit(herd_runtime_t *rt, const char *name, size_t name_len, herd_request_t *proto,
                  herd_handle_t *handle_out)
{
    if (atomic_load(&rt->queue.joined))
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "tensor '%s': this rank has joined (herd_join) and submits "
                                "nothing until its join completes", name);
    if (tls_group_depth > 0 && tls_group_len == tls_group_cap) {
        uint32_t cap = tls_group_cap ? tls_group_cap * 2 : 64;
        pthread_once(&group_key_once, make_group_key);
        if (!group_key_ok)
            return herd__status_set(HERD_ERR_NO_MEMORY, "cannot make the group's thread key");
        uint32_t *p = realloc(tls_group_ops, cap * sizeof *p);
        if (p == NULL)
            return herd__status_set(HERD_ERR_NO_MEMORY, "cannot grow this thread's group");
        tls_group_ops = p;
        tls_group_cap = cap;
        pthread_setspecific(group_key, p);
    }
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
    r->submit_ns = rt->timeline != NULL ? herd__clock_ns() : 0; /* read by the timeline only */
    if (r->kind == HERD_KIND_JOIN)
        atomic_store(&rt->queue.joined, 1);
    if (tls_group_depth > 0)
        tls_group_ops[tls_group_len++] = index;
    else
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
    if (rc != HERD_OK) {
        group_failed(name, rc);
        return rc;
    }
    *rt = herd__runtime();
    rc = herd__runtime_enter(*rt);
    if (rc != HERD_OK)
        group_failed(name, rc);
    return rc;
}

/* Ends a submission that got past begin_submit: leaves the runtime, and inside a group
 * remembers a failure for herd_group_end. */
static int end_submit(herd_runtime_t *rt, const char *name, int rc)
{
    herd__runtime_leave(rt);
    if (rc != HERD_OK)
        group_failed(name, rc);
    return rc;
}

/* Scale factors must be finite numbers. GPU memory scales through NCCL's PreMulSum (one factor
 * per rank before the sum): floating-point SUM and AVERAGE only, herd has no kernels. */
static int check_scale(const char *name, const char *what, double factor, int device, int dtype,
                       int op)
{
    if (!isfinite(factor))
        return herd__status_set(HERD_ERR_INVALID_ARG, "tensor '%s': %s %g is not finite", name,
                                what, factor);
    int fp = dtype == HERD_FLOAT16 || dtype == HERD_BFLOAT16 || dtype == HERD_FLOAT32 ||
             dtype == HERD_FLOAT64;
    if (factor != 1.0 && device >= 0 && (!fp || (op != HERD_SUM && op != HERD_AVERAGE)))
        return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                "tensor '%s': %s of GPU memory works for float sums and "
                                "averages only (NCCL's PreMulSum), not %s %s", name, what,
                                herd__dtype_name(dtype), herd__op_name(op));
    return HERD_OK;
}

/* n * m elements without overflowing the byte size. */
static int check_product(const char *name, const char *what, int64_t n, int64_t m, int dtype,
                         int64_t *out)
{
    int64_t limit = INT64_MAX / (int64_t)herd__dtype_size(dtype);
    if (n < 0 || m < 0 || (m > 0 && n > limit / m))
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': %s (%lld x %lld) is negative or overflows", name,
                                what, (long long)n, (long long)m);
    *out = n * m;
    return HERD_OK;
}

/* The buffers of a kind that is never in place: `send` of send_count and `recv` of recv_count
 * elements, each valid for where `device` says, and not overlapping at all. */
static int check_out_of_place(const char *name, const void *send, int64_t send_count,
                              const void *recv, int64_t recv_count, int dtype, int device)
{
    int rc = check_buffer(name, "sendbuf", send, send_count, dtype, device);
    if (rc == HERD_OK)
        rc = check_buffer(name, "recvbuf", recv, recv_count, dtype, device);
    if (rc != HERD_OK || send_count == 0 || recv_count == 0)
        return rc;
    uintptr_t x = (uintptr_t)send, y = (uintptr_t)recv, esize = herd__dtype_size(dtype);
    if (x < y + (uintptr_t)recv_count * esize && y < x + (uintptr_t)send_count * esize)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': sendbuf and recvbuf overlap; this operation is "
                                "never in place", name);
    return HERD_OK;
}

static int check_row(const char *name, int64_t row, int64_t count)
{
    if (row < 1)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': row %lld must be at least 1 element", name,
                                (long long)row);
    if (count % row != 0)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "tensor '%s': count %lld is not a multiple of the row of %lld "
                                "elements", name, (long long)count, (long long)row);
    return HERD_OK;
}

static int check_out_ptr(const char *name, const void *p, const char *what)
{
    if (p == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "tensor '%s': %s is NULL", name, what);
    return HERD_OK;
}

static int push_pull(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                     int dtype, int op, double prescale, double postscale, int device,
                     herd_handle_t *handle_out)
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
        rc = check_scale(name, "prescale", prescale, device, dtype, op);
    if (rc == HERD_OK)
        rc = check_scale(name, "postscale", postscale, device, dtype, op);
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
                                .root = -1, .device = device, .count = count, .row = 1,
                                .prescale = prescale, .postscale = postscale,
                                .sendbuf = sendbuf, .recvbuf = recvbuf};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    return end_submit(rt, name, rc);
}

int herd_push_pull(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                   int dtype, int op, int device, herd_handle_t *handle_out)
{
    return push_pull(name, sendbuf, recvbuf, count, dtype, op, 1.0, 1.0, device, handle_out);
}

int herd_push_pull_scaled(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                          int dtype, int op, double prescale, double postscale, int device,
                          herd_handle_t *handle_out)
{
    return push_pull(name, sendbuf, recvbuf, count, dtype, op, prescale, postscale, device,
                     handle_out);
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
                                .root = root, .device = device, .count = count, .row = 1,
                                .prescale = 1.0, .postscale = 1.0,
                                .sendbuf = buf, .recvbuf = buf};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    return end_submit(rt, name, rc);
}

int herd_allgather(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                   int dtype, int device, herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    int size = atomic_load(&rt->size);
    int64_t total = 0;
    rc = check_count_dtype(name, count, dtype);
    if (rc == HERD_OK)
        rc = check_product(name, "count * ranks", count, size, dtype, &total);
    if (rc == HERD_OK)
        rc = check_device(name, device);
    if (rc == HERD_OK)
        rc = check_out_of_place(name, sendbuf, count, recvbuf, total, dtype, device);
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_ALLGATHER, .dtype = dtype, .op = HERD_SUM,
                                .root = -1, .device = device, .count = count, .row = 1,
                                .prescale = 1.0, .postscale = 1.0,
                                .sendbuf = sendbuf, .recvbuf = recvbuf};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    return end_submit(rt, name, rc);
}

int herd_allgatherv(const char *name, const void *sendbuf, int64_t count, int64_t row,
                    int dtype, int device, void **recvbuf_out, int64_t *counts_out,
                    herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    rc = check_count_dtype(name, count, dtype);
    if (rc == HERD_OK)
        rc = check_row(name, row, count);
    if (rc == HERD_OK)
        rc = check_out_ptr(name, recvbuf_out, "recvbuf_out");
    if (rc == HERD_OK)
        rc = check_out_ptr(name, counts_out, "counts_out");
    if (rc == HERD_OK)
        rc = check_device(name, device);
    if (rc == HERD_OK)
        rc = check_buffer(name, "sendbuf", sendbuf, count, dtype, device);
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_ALLGATHERV, .dtype = dtype, .op = HERD_SUM,
                                .root = -1, .device = device, .count = count, .row = row,
                                .prescale = 1.0, .postscale = 1.0, .sendbuf = sendbuf,
                                .counts_out = counts_out, .recvbuf_out = recvbuf_out};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    return end_submit(rt, name, rc);
}

static int reducescatter(const char *name, const void *sendbuf, void *recvbuf, int64_t rows,
                         int64_t row, int dtype, int op, int device, herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    int size = atomic_load(&rt->size), rank = atomic_load(&rt->rank);
    int64_t count = 0;
    rc = check_count_dtype(name, rows, dtype);
    if (rc == HERD_OK && row < 1)
        rc = check_row(name, row, 0);
    if (rc == HERD_OK)
        rc = check_product(name, "rows * row", rows, row, dtype, &count);
    if (rc == HERD_OK && !herd__op_valid(op))
        rc = herd__status_set(HERD_ERR_INVALID_ARG, "tensor '%s': unknown op %d", name, op);
    if (rc == HERD_OK)
        rc = check_device(name, device);
    int64_t mine = rc == HERD_OK ? herd__rs_rows(rows, size, rank) * row : 0;
    if (rc == HERD_OK)
        rc = check_out_of_place(name, sendbuf, count, recvbuf, mine, dtype, device);
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_REDUCESCATTER, .dtype = dtype, .op = op,
                                .root = -1, .device = device, .count = count, .row = row,
                                .prescale = 1.0, .postscale = 1.0,
                                .sendbuf = sendbuf, .recvbuf = recvbuf};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    return end_submit(rt, name, rc);
}

int herd_reducescatter(const char *name, const void *sendbuf, void *recvbuf, int64_t recvcount,
                       int dtype, int op, int device, herd_handle_t *handle_out)
{
    /* recvcount elements per rank: recvcount * size rows of one element, split evenly. */
    int size = herd_size();
    int64_t rows = 0;
    if (recvcount >= 0 && size > 0 && recvcount <= INT64_MAX / size)
        rows = recvcount * size;
    else if (size > 0)
        rows = -1; /* refused below with the name */
    return reducescatter(name, sendbuf, recvbuf, rows, 1, dtype, op, device, handle_out);
}

int herd_reducescatterv(const char *name, const void *sendbuf, void *recvbuf, int64_t rows,
                        int64_t row, int dtype, int op, int device, herd_handle_t *handle_out)
{
    return reducescatter(name, sendbuf, recvbuf, rows, row, dtype, op, device, handle_out);
}

int64_t herd_reducescatter_rows(int64_t rows, int size, int rank)
{
    if (rows < 0 || size < 1 || rank < 0 || rank >= size)
        return -1;
    return herd__rs_rows(rows, size, rank);
}

int herd_alltoall(const char *name, const void *sendbuf, void *recvbuf, int64_t count_per_rank,
                  int dtype, int device, herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    int size = atomic_load(&rt->size);
    int64_t total = 0;
    rc = check_count_dtype(name, count_per_rank, dtype);
    if (rc == HERD_OK)
        rc = check_product(name, "count_per_rank * ranks", count_per_rank, size, dtype, &total);
    if (rc == HERD_OK)
        rc = check_device(name, device);
    if (rc == HERD_OK)
        rc = check_out_of_place(name, sendbuf, total, recvbuf, total, dtype, device);
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_ALLTOALL, .dtype = dtype, .op = HERD_SUM,
                                .root = -1, .device = device, .count = total, .row = 1,
                                .prescale = 1.0, .postscale = 1.0,
                                .sendbuf = sendbuf, .recvbuf = recvbuf};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    return end_submit(rt, name, rc);
}

int herd_alltoallv(const char *name, const void *sendbuf, const int64_t *sendcounts,
                   int64_t row, int dtype, int device, void **recvbuf_out,
                   int64_t *recvcounts_out, herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    int size = atomic_load(&rt->size);
    int64_t total = 0;
    rc = check_count_dtype(name, 0, dtype);
    if (rc == HERD_OK)
        rc = check_out_ptr(name, sendcounts, "sendcounts");
    if (rc == HERD_OK)
        rc = check_out_ptr(name, recvbuf_out, "recvbuf_out");
    if (rc == HERD_OK)
        rc = check_out_ptr(name, recvcounts_out, "recvcounts_out");
    if (rc == HERD_OK)
        rc = check_row(name, row, 0);
    int64_t limit = INT64_MAX / (int64_t)(herd__dtype_size(dtype) ? herd__dtype_size(dtype) : 1);
    for (int r = 0; rc == HERD_OK && r < size; r++) {
        if (sendcounts[r] < 0 || sendcounts[r] > limit - total)
            rc = herd__status_set(HERD_ERR_INVALID_ARG,
                                  "tensor '%s': sendcounts[%d] = %lld is negative or makes the "
                                  "total overflow", name, r, (long long)sendcounts[r]);
        else if (sendcounts[r] % row != 0)
            rc = herd__status_set(HERD_ERR_INVALID_ARG,
                                  "tensor '%s': sendcounts[%d] = %lld is not a multiple of the "
                                  "row of %lld elements", name, r, (long long)sendcounts[r],
                                  (long long)row);
        else
            total += sendcounts[r];
    }
    if (rc == HERD_OK)
        rc = check_device(name, device);
    if (rc == HERD_OK)
        rc = check_buffer(name, "sendbuf", sendbuf, total, dtype, device);
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_ALLTOALLV, .dtype = dtype, .op = HERD_SUM,
                                .root = -1, .device = device, .count = total, .row = row,
                                .prescale = 1.0, .postscale = 1.0, .sendbuf = sendbuf,
                                .sendcounts = sendcounts, .counts_out = recvcounts_out,
                                .recvbuf_out = recvbuf_out};
        rc = submit(rt, name, name_len, &proto, handle_out);
    }
    return end_submit(rt, name, rc);
}

int herd_barrier(const char *name, herd_handle_t *handle_out)
{
    size_t name_len = 0;
    herd_runtime_t *rt = NULL;
    int rc = begin_submit(name, handle_out, &name_len, &rt);
    if (rc != HERD_OK)
        return rc;
    herd_request_t proto = {.kind = HERD_KIND_BARRIER, .dtype = HERD_UINT8, .op = HERD_SUM,
                            .root = -1, .device = HERD_DEVICE_CPU, .count = 0, .row = 1,
                            .prescale = 1.0, .postscale = 1.0};
    rc = submit(rt, name, name_len, &proto, handle_out);
    return end_submit(rt, name, rc);
}

/* Every join travels under this name; the negotiator keys joins by kind, not name. */
static const char join_name[] = "herd.join";

int herd_join(int device, int *last_rank_out, herd_handle_t *handle_out)
{
    if (handle_out == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "handle_out is NULL");
    *handle_out = 0;
    if (last_rank_out == NULL)
        return herd__status_set(HERD_ERR_INVALID_ARG, "herd_join: last_rank_out is NULL");
    if (tls_group_depth > 0)
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "herd_join cannot be part of a group (herd_group_start)");
    herd_runtime_t *rt = herd__runtime();
    int rc = herd__runtime_enter(rt);
    if (rc != HERD_OK)
        return rc;
    if (device < HERD_DEVICE_CPU)
        rc = herd__status_set(HERD_ERR_INVALID_ARG,
                              "herd_join: device %d is neither HERD_DEVICE_CPU (-1) nor a CUDA "
                              "ordinal", device);
    long running = atomic_load(&rt->handles.running);
    if (rc == HERD_OK && running > 0)
        rc = herd__status_set(HERD_ERR_INVALID_USAGE,
                              "herd_join: this rank still has %ld operation(s) in flight; wait "
                              "for them before joining", running);
    if (rc == HERD_OK) {
        herd_request_t proto = {.kind = HERD_KIND_JOIN, .dtype = HERD_UINT8, .op = HERD_SUM,
                                .root = -1, .device = device, .count = 0, .row = 1,
                                .prescale = 1.0, .postscale = 1.0,
                                .last_rank_out = last_rank_out};
        rc = submit(rt, join_name, sizeof join_name - 1, &proto, handle_out);
    }
    herd__runtime_leave(rt);
    return rc;
}

int herd_group_start(void)
{
    if (tls_group_depth == 0) {
        tls_group_len = 0;
        tls_group_failed = 0;
    }
    tls_group_depth++;
    return HERD_OK;
}

int herd_group_end(void)
{
    if (tls_group_depth == 0)
        return herd__status_set(HERD_ERR_INVALID_USAGE,
                                "herd_group_end without a matching herd_group_start");
    if (--tls_group_depth > 0)
        return HERD_OK;
    herd_runtime_t *rt = herd__runtime();
    uint32_t n = tls_group_len;
    tls_group_len = 0;
    if (!tls_group_failed) {
        if (herd__runtime_enter(rt) == HERD_OK) {
            herd__queue_push_many(&rt->queue, tls_group_ops, n);
            herd__runtime_leave(rt);
            return HERD_OK;
        }
        tls_group_failed = 1;
        snprintf(tls_group_why, sizeof tls_group_why,
                 "herd_group_end: herd stopped before the group was submitted");
    }
    /* All or none: the members that were accepted complete here with the reason, unsent. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t index = tls_group_ops[i];
        herd_request_t *r = herd__handles_request(&rt->handles, index);
        atomic_store(&r->tensor->inflight, 0);
        herd__handles_complete(&rt->handles, index, HERD_ERR_INVALID_USAGE, tls_group_why);
    }
    herd__handles_notify(&rt->handles);
    tls_group_failed = 0;
    return herd__status_set_msg(HERD_ERR_INVALID_USAGE, tls_group_why);
}

int herd_free(void *ptr, int device)
{
    if (device < HERD_DEVICE_CPU)
        return herd__status_set(HERD_ERR_INVALID_ARG, "herd_free: device %d is invalid",
                                device);
    if (ptr == NULL)
        return HERD_OK;
    if (device >= 0)
        return herd__gpu_free(ptr, device);
    free(ptr);
    return HERD_OK;
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

/* Runs the rounds `handle` needs on this thread while nobody else drives (see
 * herd_wait_handle); afterwards, if the operation still waits on other ranks, makes sure the
 * coordinator thread knows about this thread's submissions. */
static void drive_for(herd_runtime_t *rt, herd_handle_t handle, int64_t deadline_ns)
{
    if (herd__handles_poll(&rt->handles, handle) != HERD_INPROGRESS)
        return; /* done before this wait: says nothing about who should drive the next one */
    int drove = 0;
    while (herd__runtime_enter(rt) == HERD_OK) {
        int ran = herd__coordinator_drive(rt->coordinator, handle, deadline_ns);
        herd__runtime_leave(rt);
        if (!ran)
            break;
        drove = 1;
        if (herd__handles_poll(&rt->handles, handle) != HERD_INPROGRESS)
            break;
    }
    int pending = herd__handles_poll(&rt->handles, handle) == HERD_INPROGRESS;
    tls_drives_own_waits = drove && !pending;
    if (pending) {
        herd__count(HERD_CTR_HANDOFFS);
        flush_submissions(rt);
    }
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
    if (timeout_ms < 0) {
        drive_for(rt, handle, -1);
    } else {
        tls_drives_own_waits = 0;
        if (herd__handles_poll(&rt->handles, handle) == HERD_INPROGRESS)
            flush_submissions(rt);
    }
    return herd__handles_wait(&rt->handles, handle, timeout_ms);
}

int herd_progress_handle(herd_handle_t handle, int64_t slice_ms)
{
    herd_runtime_t *rt = herd__runtime();
    int rc = check_handles_exist(rt);
    if (rc != HERD_OK)
        return rc;
    if (slice_ms < 0)
        return herd__status_set(HERD_ERR_INVALID_ARG,
                                "slice_ms %lld is invalid: use >= 0", (long long)slice_ms);
    int64_t start = herd__clock_ns();
    drive_for(rt, handle, slice_ms > INT64_MAX / 4000000 ? -1 : start + slice_ms * 1000000);
    int64_t left_ms = slice_ms - (herd__clock_ns() - start) / 1000000;
    rc = herd__handles_wait(&rt->handles, handle, left_ms > 0 ? left_ms : 0);
    if (rc == HERD_ERR_TIMEOUT) { /* the slice's end, never the operation's status */
        herd__status_clear();
        return HERD_INPROGRESS;
    }
    return rc;
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

int herd_push_pull_sync(const char *name, const void *sendbuf, void *recvbuf, int64_t count,
                        int dtype, int op, int device, int64_t slice_ms,
                        herd_handle_t *handle_out)
{
    int rc = herd_push_pull(name, sendbuf, recvbuf, count, dtype, op, device, handle_out);
    if (rc != HERD_OK)
        return rc;
    return herd_progress_handle(*handle_out, slice_ms);
}
