/*
 * herd_tf_ops.c - herd's collectives as TensorFlow custom ops (libherd_tf.so), written in C
 * against TensorFlow's stable C API for ops and kernels (tensorflow/c/ops.h, kernels.h).
 *
 * DESIGN
 *
 * Linking. This library does not link libherd: its herd_* references stay undefined and are
 * resolved when it is loaded, against the libherd that `import herd` loaded with RTLD_GLOBAL
 * (the pattern tests/python/plugin proves). It is linked with -z now, so a load before
 * `import herd` fails at once with "undefined symbol: herd_..." instead of at the first call.
 * The TF_* symbols come from libtensorflow_framework.so.2, which it does link (the process has
 * it already; TensorFlow loads its own libraries RTLD_LOCAL, so they are not global).
 *
 * Ops. HerdAllreduce, HerdGroupedAllreduce, HerdAllgather, HerdBroadcast, HerdAlltoall and
 * HerdReducescatter are registered by a constructor when TensorFlow loads the library
 * (tf.load_op_library). Each op is stateful: TensorFlow never folds, deduplicates or prunes
 * it, and tf.function's automatic control dependencies run a function's stateful ops in program
 * order, so every rank issues its collectives in the order its Python code made them.
 *
 * Names. The herd tensor name is the op's `tensor_name` attribute, or, when that is empty, the
 * node's name (TF_OpKernelConstruction_GetName): identical graphs give identical node names on
 * every rank. Grouped members are "<name>.<i>", each tensor's shape check "<name>.shape". A
 * name longer than HERD_MAX_NAME_LEN keeps its head and gets a hash of the whole name, the same
 * on every rank.
 *
 * Groups. Each kernel submits its tensors and their shape checks between herd_group_start and
 * herd_group_end (per thread, so on the kernel's own thread), then waits for every handle:
 * herd negotiates them as one unit, and a failure of any is reported once, on every rank.
 * The single-tensor kernels (all but HerdGroupedAllreduce) share one skeleton, single_run and
 * single_t: each keeps only its checks, its herd call and its outputs.
 *
 * Threads and completion. A kernel submits to herd and then sleeps in herd_wait_handle(-1)
 * (a condition variable, or the rounds its own operation needs run on this thread: no
 * spinning). The kernels are synchronous because the C API cannot complete a kernel later:
 * TF_NewAsyncKernelBuilder hands compute_async_func the address of ComputeAsync's own by-value
 * `done` argument (tensorflow/c/kernels.cc, CAsyncOpKernel::ComputeAsync), which is destroyed
 * when compute_async_func returns, so TF_RunAsyncOpKernelDoneCallback may only be called before
 * returning (on TensorFlow 2.21 a later call crashes: docs/tensorflow.md). A blocked kernel holds one inter-op thread of TensorFlow; the program order above
 * means one function holds at most one at a time, so blocked kernels cannot starve the pool
 * of the collective another rank waits for. docs/tensorflow.md has the details.
 *
 * Buffers. Inputs and outputs are TF_Tensor references held until herd's handle completes (the
 * kernel returns only then). Allreduce and broadcast forward their input buffer to the output
 * when TensorFlow allows (in place), else write a new output. Variable-size results
 * (allgather, alltoall) come from herd's buffer and are copied into the TF output, then freed.
 *
 * Devices. CPU kernels only: TF_GetStream returns a stream only for pluggable devices, not for
 * TensorFlow's own CUDA device, so a GPU kernel could not order herd's work after the producer's
 * stream. On a GPU machine TensorFlow places these ops on the CPU and copies.
 *
 * Copyright 2026 The herd authors. SPDX-License-Identifier: MIT
 */
#include <herd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/kernels.h"
/* ops.h declares these as bare C++ struct names; C needs the typedefs before it (C11 allows
 * them to be repeated should a later ops.h add its own). */
typedef struct TF_DimensionHandle TF_DimensionHandle;
typedef struct TF_OpDefinitionBuilder TF_OpDefinitionBuilder;
typedef struct TF_ShapeHandle TF_ShapeHandle;
typedef struct TF_ShapeInferenceContext TF_ShapeInferenceContext;
#include "tensorflow/c/ops.h"
#include "tensorflow/c/tf_datatype.h"
#include "tensorflow/c/tf_status.h"
#include "tensorflow/c/tf_tensor.h"

/* The dtypes every op accepts: herd's dtype table (herd.h) in TensorFlow's names. */
#define HERD_TF_TYPES "{uint8, int8, int32, int64, half, bfloat16, float, double}"

/* TensorFlow's TensorShape allows 254 dimensions. */
enum { HERD_TF_MAX_DIMS = 256 };

enum { KIND_ALLREDUCE, KIND_GROUPED, KIND_ALLGATHER, KIND_BROADCAST, KIND_ALLTOALL, KIND_RS };

typedef struct herd_tf_kernel {
    int kind;
    int reduce_op;
    int root;
    double prescale;
    double postscale;
    char name[HERD_MAX_NAME_LEN + 1];
} herd_tf_kernel_t;

/* Set by the constructor: 1 when the process's libherd has the ABI this library was built for. */
static int abi_ok;

/* TensorFlow's dtype as herd's, or -1 (the ops' type constraints normally prevent that). */
static int herd_dtype(TF_DataType t)
{
    switch (t) {
    case TF_UINT8:
        return HERD_UINT8;
    case TF_INT8:
        return HERD_INT8;
    case TF_INT32:
        return HERD_INT32;
    case TF_INT64:
        return HERD_INT64;
    case TF_HALF:
        return HERD_FLOAT16;
    case TF_BFLOAT16:
        return HERD_BFLOAT16;
    case TF_FLOAT:
        return HERD_FLOAT32;
    case TF_DOUBLE:
        return HERD_FLOAT64;
    default:
        return -1;
    }
}

/* herd's error classes as TensorFlow's codes (Horovod's choices where it has one). */
static TF_Code tf_code(int status)
{
    switch (status) {
    case HERD_ERR_INVALID_ARG:
        return TF_INVALID_ARGUMENT;
    case HERD_ERR_INVALID_USAGE:
    case HERD_ERR_MISMATCH:
        return TF_FAILED_PRECONDITION;
    case HERD_ERR_NOT_FOUND:
        return TF_NOT_FOUND;
    case HERD_ERR_NOT_SUPPORTED:
        return TF_UNIMPLEMENTED;
    case HERD_ERR_NO_MEMORY:
        return TF_RESOURCE_EXHAUSTED;
    case HERD_ERR_TIMEOUT:
    case HERD_ERR_STALLED:
        return TF_DEADLINE_EXCEEDED;
    case HERD_ERR_SHUTDOWN:
        return TF_ABORTED;
    default:
        return TF_INTERNAL;
    }
}

/* Fails the kernel with herd's status: "HERD_ERR_MISMATCH: <herd's message>". `detail` is the
 * message to use, or NULL for this thread's herd_last_error(). The Python layer maps the
 * leading status name back to herd's exception class. */
static void fail_herd(TF_OpKernelContext *ctx, int status, const char *detail)
{
    char msg[1024];
    const char *text = detail != NULL ? detail : herd_last_error();
    if (text == NULL || text[0] == '\0')
        text = herd_strerror(status);
    /* Truncating herd's message to the buffer is fine: the status name leads. */
    int n = snprintf(msg, sizeof msg, "%s: ", herd_status_name(status));
    if (n > 0 && (size_t)n < sizeof msg)
        snprintf(msg + n, sizeof msg - (size_t)n, "%.*s", (int)(sizeof msg - (size_t)n - 1),
                 text);
    TF_Status *s = TF_NewStatus();
    TF_SetStatus(s, tf_code(status), msg);
    TF_OpKernelContext_Failure(ctx, s);
    TF_DeleteStatus(s);
}

static void fail_msg(TF_OpKernelContext *ctx, TF_Code code, const char *msg)
{
    TF_Status *s = TF_NewStatus();
    TF_SetStatus(s, code, msg);
    TF_OpKernelContext_Failure(ctx, s);
    TF_DeleteStatus(s);
}

/* FNV-1a, 64 bits: a long name's tail, the same on every rank. */
static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Copies `n` bytes of `src` into k->name, leaving `reserve` bytes free for the suffixes
 * ".<i>.shape"; a longer name keeps its head and ends in "#<hash of all of it>". */
static void set_name(herd_tf_kernel_t *k, const char *src, size_t n, size_t reserve)
{
    size_t cap = HERD_MAX_NAME_LEN - reserve;
    if (n <= cap) {
        memcpy(k->name, src, n);
        k->name[n] = '\0';
        return;
    }
    size_t head = cap - 17;
    memcpy(k->name, src, head);
    snprintf(k->name + head, 18, "#%016llx", (unsigned long long)fnv1a(src, n));
}

static int get_int_attr(TF_OpKernelConstruction *c, const char *attr, int *out, TF_Status *s)
{
    int64_t v = 0;
    TF_OpKernelConstruction_GetAttrInt64(c, attr, &v, s);
    *out = (int)v;
    return TF_GetCode(s) == TF_OK;
}

static int get_float_attr(TF_OpKernelConstruction *c, const char *attr, double *out,
                          TF_Status *s)
{
    float v = 1.0f;
    TF_OpKernelConstruction_GetAttrFloat(c, attr, &v, s);
    *out = v;
    return TF_GetCode(s) == TF_OK;
}

static void *create_kernel(TF_OpKernelConstruction *c, int kind)
{
    TF_Status *s = TF_NewStatus();
    herd_tf_kernel_t *k = calloc(1, sizeof *k);
    char *attr_name = NULL;
    if (k == NULL) {
        TF_SetStatus(s, TF_RESOURCE_EXHAUSTED, "herd: out of memory creating a kernel");
        goto fail;
    }
    if (!abi_ok) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "herd: libherd_tf was built for herd ABI %d but the process's libherd has ABI "
                 "%d; rebuild the op library with this herd",
                 HERD_ABI_VERSION, herd_abi_version());
        TF_SetStatus(s, TF_FAILED_PRECONDITION, msg);
        goto fail;
    }
    k->kind = kind;
    k->prescale = 1.0;
    k->postscale = 1.0;
    if (kind == KIND_ALLREDUCE || kind == KIND_GROUPED || kind == KIND_RS) {
        if (!get_int_attr(c, "reduce_op", &k->reduce_op, s))
            goto fail;
    }
    if (kind == KIND_ALLREDUCE || kind == KIND_GROUPED) {
        if (!get_float_attr(c, "prescale_factor", &k->prescale, s) ||
            !get_float_attr(c, "postscale_factor", &k->postscale, s))
            goto fail;
    }
    if (kind == KIND_BROADCAST && !get_int_attr(c, "root_rank", &k->root, s))
        goto fail;

    int32_t list_size = 0, total = 0;
    TF_OpKernelConstruction_GetAttrSize(c, "tensor_name", &list_size, &total, s);
    if (TF_GetCode(s) != TF_OK)
        goto fail;
    size_t reserve = 20; /* for ".<i>.shape" */
    if (total > 0) {
        attr_name = malloc((size_t)total);
        if (attr_name == NULL) {
            TF_SetStatus(s, TF_RESOURCE_EXHAUSTED, "herd: out of memory creating a kernel");
            goto fail;
        }
        TF_OpKernelConstruction_GetAttrString(c, "tensor_name", attr_name, (size_t)total, s);
        if (TF_GetCode(s) != TF_OK)
            goto fail;
        set_name(k, attr_name, (size_t)total, reserve);
    } else {
        TF_StringView node = TF_OpKernelConstruction_GetName(c);
        set_name(k, node.data, node.len, reserve);
    }
    free(attr_name);
    TF_DeleteStatus(s);
    return k;

fail:
    TF_OpKernelConstruction_Failure(c, s);
    TF_DeleteStatus(s);
    free(attr_name);
    free(k);
    return NULL;
}

/* TensorFlow's create function gets no user data, so each kind has its own. */
#define DEFINE_CREATE(fn, kind)                                                                    \
    static void *fn(TF_OpKernelConstruction *c)                                                    \
    {                                                                                              \
        return create_kernel(c, kind);                                                             \
    }
DEFINE_CREATE(create_allreduce, KIND_ALLREDUCE)
DEFINE_CREATE(create_grouped, KIND_GROUPED)
DEFINE_CREATE(create_allgather, KIND_ALLGATHER)
DEFINE_CREATE(create_broadcast, KIND_BROADCAST)
DEFINE_CREATE(create_alltoall, KIND_ALLTOALL)
DEFINE_CREATE(create_reducescatter, KIND_RS)
#undef DEFINE_CREATE

static void delete_kernel(void *k)
{
    free(k);
}

/* An input's dims (at most HERD_TF_MAX_DIMS), element count and herd dtype. */
typedef struct tensor_info {
    TF_Tensor *t;
    int ndims;
    int64_t dims[HERD_TF_MAX_DIMS];
    int64_t count;
    int dtype;
    TF_DataType tf_dtype;
} tensor_info_t;

/* Fills `info` from its tensor `t` (dims within HERD_TF_MAX_DIMS: TensorFlow's limit). */
static void get_input_info(TF_Tensor *t, tensor_info_t *info)
{
    info->t = t;
    info->ndims = TF_NumDims(t);
    for (int d = 0; d < info->ndims && d < HERD_TF_MAX_DIMS; d++)
        info->dims[d] = TF_Dim(t, d);
    info->count = TF_TensorElementCount(t);
    info->tf_dtype = TF_TensorType(t);
    info->dtype = herd_dtype(info->tf_dtype);
}

static int get_input(TF_OpKernelContext *ctx, int i, tensor_info_t *info, TF_Status *s)
{
    info->t = NULL;
    TF_GetInput(ctx, i, &info->t, s);
    if (TF_GetCode(s) != TF_OK)
        return 0;
    get_input_info(info->t, info);
    if (info->ndims > HERD_TF_MAX_DIMS) {
        TF_SetStatus(s, TF_INVALID_ARGUMENT, "herd: tensor has too many dimensions");
        return 0;
    }
    if (info->dtype < 0) {
        TF_SetStatus(s, TF_INVALID_ARGUMENT,
                     "herd: unsupported dtype (herd reduces uint8, int8, int32, int64, float16, "
                     "bfloat16, float32 and float64)");
        return 0;
    }
    return 1;
}

/* The output `out_index` with the input's shape: the input's own buffer when TensorFlow can
 * forward it (its only reference), else a new one. */
static TF_Tensor *same_shape_output(TF_OpKernelContext *ctx, int in_index, int out_index,
                                    const tensor_info_t *in, int *forwarded, TF_Status *s)
{
    int fwd = -1;
    TF_Tensor *out = TF_ForwardInputOrAllocateOutput(ctx, &in_index, 1, out_index, in->dims,
                                                     in->ndims, &fwd, s);
    *forwarded = fwd == in_index;
    return TF_GetCode(s) == TF_OK ? out : NULL;
}

static int submit_allreduce(const herd_tf_kernel_t *k, const char *name, const void *send,
                            void *recv, int64_t count, int dtype, herd_handle_t *h)
{
    if (k->prescale == 1.0 && k->postscale == 1.0)
        return herd_push_pull(name, send, recv, count, dtype, k->reduce_op, HERD_DEVICE_CPU, h);
    return herd_push_pull_scaled(name, send, recv, count, dtype, k->reduce_op, k->prescale,
                                 k->postscale, HERD_DEVICE_CPU, h);
}

/* ---- batches: one op's submissions as one herd group, with its shape checks ----------------
 *
 * herd compares counts and dtypes across ranks, not shapes. Beside each tensor a kernel
 * submits, in the same herd group (so in the same negotiation round), an allgather of
 * [number of dims, dims...] named "<name>.shape" (the first dimension left out where ranks may
 * differ in it: allgather, alltoall). Ranks whose tensors differ in their number of dimensions
 * send different counts, which herd itself reports as a mismatch; otherwise every rank compares
 * every rank's dims with rank 0's and fails alike with HERD_ERR_MISMATCH, naming both shapes.
 * Every execution checks, on every rank: skipping a check on some ranks only (say, "the shape is
 * the one I checked last time") would leave the others waiting for it. */

typedef struct batch {
    int n;               /* submissions so far */
    int size;            /* herd_size() when the batch was made */
    herd_handle_t *h;    /* [cap] handles, 0 where a submission failed */
    int64_t **shape;     /* [cap] shape checks (or NULL): own vector, then every rank's */
    int *shape_len;      /* [cap] int64 per rank */
    int *shape_skip;     /* [cap] leading dims left out */
    const char **member; /* [cap] the member name each shape check is for */
    int rc;              /* the first failure */
    char msg[1024];      /* its message */
    char names[];        /* cap * NAME_CAP bytes of submission names */
} batch_t;

/* k->name leaves 20 bytes for ".<i>.shape", so herd never sees more than HERD_MAX_NAME_LEN. */
enum { NAME_CAP = HERD_MAX_NAME_LEN + 32 };

static void batch_free(batch_t *b)
{
    if (b == NULL)
        return;
    for (int i = 0; i < b->n; i++)
        free(b->shape[i]);
    free(b->h);
    free(b->shape);
    free(b->shape_len);
    free(b->shape_skip);
    free(b->member);
    free(b);
}

static batch_t *batch_new(int cap)
{
    batch_t *b = calloc(1, sizeof *b + (size_t)cap * NAME_CAP);
    if (b == NULL)
        return NULL;
    b->size = herd_size();
    b->h = calloc((size_t)cap, sizeof *b->h);
    b->shape = calloc((size_t)cap, sizeof *b->shape);
    b->shape_len = calloc((size_t)cap, sizeof *b->shape_len);
    b->shape_skip = calloc((size_t)cap, sizeof *b->shape_skip);
    b->member = calloc((size_t)cap, sizeof *b->member);
    if (b->h == NULL || b->shape == NULL || b->shape_len == NULL || b->shape_skip == NULL ||
        b->member == NULL) {
        batch_free(b);
        return NULL;
    }
    return b;
}

/* Records `rc` (and this thread's herd message) if it is the batch's first failure. */
static void batch_note(batch_t *b, int rc, const char *detail)
{
    if (rc == HERD_OK || b->rc != HERD_OK)
        return;
    b->rc = rc;
    snprintf(b->msg, sizeof b->msg, "%s", detail != NULL ? detail : herd_last_error());
}

/* A slot for the next submission: its handle and a name buffer. */
static int batch_slot(batch_t *b, char **name)
{
    int i = b->n++;
    *name = b->names + (size_t)i * NAME_CAP;
    return i;
}

/* Submits the shape check of `in` (dims from `skip` on) for the member named `name`. */
static void batch_shape_check(batch_t *b, const char *name, const tensor_info_t *in, int skip)
{
    char *cname;
    int i = batch_slot(b, &cname);
    int k = 1 + (in->ndims > skip ? in->ndims - skip : 0);
    size_t ranks = b->size > 0 ? (size_t)b->size : 1;
    int64_t *v = malloc((1 + ranks) * (size_t)k * sizeof *v);
    if (v == NULL) {
        batch_note(b, HERD_ERR_NO_MEMORY, "herd: out of memory");
        return;
    }
    v[0] = in->ndims;
    for (int d = skip; d < in->ndims; d++)
        v[1 + d - skip] = in->dims[d];
    b->shape[i] = v;
    b->shape_len[i] = k;
    b->shape_skip[i] = skip;
    b->member[i] = name;
    snprintf(cname, NAME_CAP, "%s.shape", name);
    batch_note(b, herd_allgather(cname, v, v + k, k, HERD_INT64, HERD_DEVICE_CPU, &b->h[i]),
               NULL);
}

/* "[2, 3]" ("[*, 3]" with the first dimension left out) into buf. */
static void format_shape(char *buf, size_t cap, const int64_t *row, int k, int skip)
{
    size_t used = (size_t)snprintf(buf, cap, "[%s", skip ? "*" : "");
    for (int j = 1; j < k && used < cap; j++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", (j > 1 || skip) ? ", " : "",
                                 (long long)row[j]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

/* Ends the group, waits for every handle, then compares the shapes. Returns herd's status. */
static int batch_finish(TF_OpKernelContext *ctx, batch_t *b)
{
    batch_note(b, herd_group_end(), NULL);
    for (int i = 0; i < b->n; i++) {
        if (b->h[i] == 0)
            continue;
        int rc = herd_wait_handle(b->h[i], -1);
        if (rc == HERD_ERR_MISMATCH && b->shape[i] != NULL && b->rc == HERD_OK) {
            char detail[900];
            snprintf(detail, sizeof detail, "tensor '%s': ranks disagree on its number of "
                     "dimensions (%s)", b->member[i], herd_last_error());
            batch_note(b, rc, detail);
        }
        batch_note(b, rc, NULL);
    }
    for (int i = 0; b->rc == HERD_OK && i < b->n; i++) {
        const int64_t *all = b->shape[i] == NULL ? NULL : b->shape[i] + b->shape_len[i];
        int k = b->shape_len[i];
        for (int r = 1; all != NULL && r < b->size; r++) {
            if (memcmp(all, all + (size_t)r * (size_t)k, (size_t)k * sizeof *all) == 0)
                continue;
            char s0[200], sr[200];
            format_shape(s0, sizeof s0, all, k, b->shape_skip[i]);
            format_shape(sr, sizeof sr, all + (size_t)r * (size_t)k, k, b->shape_skip[i]);
            snprintf(b->msg, sizeof b->msg,
                     "tensor '%s': ranks disagree on its shape: rank 0 has %s, rank %d has %s",
                     b->member[i], s0, r, sr);
            b->rc = HERD_ERR_MISMATCH;
            break;
        }
    }
    if (b->rc != HERD_OK)
        fail_herd(ctx, b->rc, b->msg);
    return b->rc;
}

/* ---- single-tensor kernels: one skeleton -----------------------------------------------------
 *
 * Allreduce, broadcast, allgather, alltoall and reducescatter each take input 0, check it and
 * allocate what they must before submitting, submit one herd call beside input 0's shape check
 * as one group (single_run), wait, and then write any variable-size output. A single_t holds
 * every resource such a kernel may own, so single_end releases them whichever step failed; a
 * kernel keeps only its checks, its herd call (a single_submit_fn) and its outputs. Each step
 * returns 1 to go on, or 0 once it has failed the kernel. */

typedef struct single {
    TF_OpKernelContext *ctx;
    TF_Status *s;
    int size;            /* herd_size() when the kernel started */
    tensor_info_t in;    /* input 0 */
    tensor_info_t sp;    /* input 1 where there is one (alltoall's splits) */
    TF_Tensor *out;      /* output 0 when allocated before the submission, else NULL */
    int forwarded;       /* out is input 0's own buffer */
    int64_t row;         /* elements per first-dimension row (variable-size ops) */
    int64_t *counts;     /* [size] elements received from each rank, or NULL */
    int64_t *sendcounts; /* [size] elements sent to each rank, or NULL */
    void *recv;          /* herd's buffer of a variable-size result, or NULL */
    batch_t *b;
} single_t;

/* The kernel's herd call, its handle into `h`; returns herd's status. */
typedef int (*single_submit_fn)(const herd_tf_kernel_t *k, single_t *r, herd_handle_t *h);

static void single_init(single_t *r, TF_OpKernelContext *ctx)
{
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->s = TF_NewStatus();
    r->size = herd_size();
}

/* Fails the kernel with the TensorFlow status in r->s. */
static int single_tf_fail(single_t *r)
{
    TF_OpKernelContext_Failure(r->ctx, r->s);
    return 0;
}

static int single_oom(single_t *r)
{
    TF_SetStatus(r->s, TF_RESOURCE_EXHAUSTED, "herd: out of memory");
    return single_tf_fail(r);
}

/* One int64 per rank (at least one), zeroed, into *counts. */
static int single_alloc_counts(single_t *r, int64_t **counts)
{
    *counts = calloc(r->size > 0 ? (size_t)r->size : 1, sizeof **counts);
    return *counts != NULL || single_oom(r);
}

static int single_input(single_t *r, int i, tensor_info_t *info)
{
    return get_input(r->ctx, i, info, r->s) || single_tf_fail(r);
}

/* Output 0 with input 0's shape, in place where TensorFlow allows (same_shape_output). */
static int single_same_shape(single_t *r)
{
    r->out = same_shape_output(r->ctx, 0, 0, &r->in, &r->forwarded, r->s);
    return r->out != NULL || single_tf_fail(r);
}

/* Needs herd initialised and input 0 of rank 1 or more: its rows are split across ranks. */
static int single_need_rows(single_t *r, const char *what)
{
    if (r->size < 1) {
        fail_herd(r->ctx, HERD_ERR_INVALID_USAGE, "herd is not initialised");
        return 0;
    }
    if (r->in.ndims < 1) {
        char msg[200];
        snprintf(msg, sizeof msg, "herd: %s needs a tensor of rank 1 or more", what);
        fail_msg(r->ctx, TF_INVALID_ARGUMENT, msg);
        return 0;
    }
    return 1;
}

/* One group: input 0's shape check (dims from `skip` on), then `submit`'s call; waits for both
 * and compares the shapes (batch_finish). */
static int single_run(single_t *r, const herd_tf_kernel_t *k, int skip, single_submit_fn submit)
{
    if ((r->b = batch_new(2)) == NULL)
        return single_oom(r);
    herd_group_start();
    batch_shape_check(r->b, k->name, &r->in, skip);
    char *unused;
    int i = batch_slot(r->b, &unused);
    batch_note(r->b, submit(k, r, &r->b->h[i]), NULL);
    return batch_finish(r->ctx, r->b) == HERD_OK;
}

static void single_end(single_t *r)
{
    batch_free(r->b);
    herd_free(r->recv, HERD_DEVICE_CPU);
    free(r->counts);
    free(r->sendcounts);
    if (r->out != NULL)
        TF_DeleteTensor(r->out);
    if (r->sp.t != NULL)
        TF_DeleteTensor(r->sp.t);
    if (r->in.t != NULL)
        TF_DeleteTensor(r->in.t);
    TF_DeleteStatus(r->s);
}

static int submit_allreduce_single(const herd_tf_kernel_t *k, single_t *r, herd_handle_t *h)
{
    return submit_allreduce(k, k->name, TF_TensorData(r->in.t), TF_TensorData(r->out),
                            r->in.count, r->in.dtype, h);
}

static void compute_allreduce(void *kp, TF_OpKernelContext *ctx)
{
    single_t r;
    single_init(&r, ctx);
    if (single_input(&r, 0, &r.in) && single_same_shape(&r))
        single_run(&r, kp, 0, submit_allreduce_single);
    single_end(&r);
}

/* Every member and its shape check go to herd as one group: every rank negotiates them as one
 * unit and herd fuses them (one collective per dtype where they fit the fusion buffer). */
static void compute_grouped(void *kp, TF_OpKernelContext *ctx)
{
    herd_tf_kernel_t *k = kp;
    TF_Status *s = TF_NewStatus();
    int n = TF_NumInputs(ctx);
    TF_Tensor **ins = calloc((size_t)n + 1, sizeof *ins);
    TF_Tensor **outs = calloc((size_t)n + 1, sizeof *outs);
    tensor_info_t *in = malloc(sizeof *in);
    batch_t *b = batch_new(2 * n);
    char (*names)[NAME_CAP] = malloc((size_t)(n > 0 ? n : 1) * NAME_CAP);
    if (ins == NULL || outs == NULL || in == NULL || b == NULL || names == NULL) {
        TF_SetStatus(s, TF_RESOURCE_EXHAUSTED, "herd: out of memory");
        TF_OpKernelContext_Failure(ctx, s);
        goto done;
    }
    /* Every input and output first: a TensorFlow failure then submits nothing. */
    for (int i = 0; i < n; i++) {
        int forwarded = 0;
        int ok = get_input(ctx, i, in, s);
        ins[i] = in->t;
        if (ok)
            outs[i] = same_shape_output(ctx, i, i, in, &forwarded, s);
        if (!ok || outs[i] == NULL) {
            TF_OpKernelContext_Failure(ctx, s);
            goto done;
        }
    }
    herd_group_start();
    for (int i = 0; i < n; i++) {
        get_input_info(ins[i], in);
        snprintf(names[i], NAME_CAP, "%s.%d", k->name, i);
        batch_shape_check(b, names[i], in, 0);
        char *unused;
        int j = batch_slot(b, &unused);
        batch_note(b, submit_allreduce(k, names[i], TF_TensorData(ins[i]),
                                       TF_TensorData(outs[i]), in->count, in->dtype, &b->h[j]),
                   NULL);
    }
    batch_finish(ctx, b);
done:
    for (int i = 0; ins != NULL && outs != NULL && i < n; i++) {
        if (outs[i] != NULL)
            TF_DeleteTensor(outs[i]);
        if (ins[i] != NULL)
            TF_DeleteTensor(ins[i]);
    }
    batch_free(b);
    free(names);
    free(in);
    free(outs);
    free(ins);
    TF_DeleteStatus(s);
}

static int submit_broadcast(const herd_tf_kernel_t *k, single_t *r, herd_handle_t *h)
{
    return herd_broadcast(k->name, TF_TensorData(r->out), r->in.count, r->in.dtype, k->root,
                          HERD_DEVICE_CPU, h);
}

/* herd broadcasts in output 0: the input's own buffer, or a copy of it. */
static void compute_broadcast(void *kp, TF_OpKernelContext *ctx)
{
    single_t r;
    single_init(&r, ctx);
    if (single_input(&r, 0, &r.in) && single_same_shape(&r)) {
        if (!r.forwarded && r.in.count > 0)
            memcpy(TF_TensorData(r.out), TF_TensorData(r.in.t), TF_TensorByteSize(r.in.t));
        single_run(&r, kp, 0, submit_broadcast);
    }
    single_end(&r);
}

/* Elements per first-dimension row (a scalar counts as one row of one element). */
static int64_t row_elems(const tensor_info_t *in)
{
    int64_t row = 1;
    for (int d = 1; d < in->ndims; d++)
        row *= in->dims[d];
    return row;
}

/* Allocates output `index` as `rows` rows shaped like the input's, copies `bytes` from `src`. */
static int output_rows(TF_OpKernelContext *ctx, int index, const tensor_info_t *in, int64_t rows,
                       const void *src, size_t bytes, TF_Status *s)
{
    int64_t dims[HERD_TF_MAX_DIMS];
    int nd = in->ndims > 0 ? in->ndims : 1;
    dims[0] = rows;
    for (int d = 1; d < in->ndims; d++)
        dims[d] = in->dims[d];
    TF_Tensor *out = TF_AllocateOutput(ctx, index, in->tf_dtype, dims, nd, bytes, s);
    if (out == NULL || TF_GetCode(s) != TF_OK)
        return 0;
    if (bytes > 0)
        memcpy(TF_TensorData(out), src, bytes);
    TF_DeleteTensor(out);
    return 1;
}

/* Needs a non-zero row: the rows each rank sent are counts / row. */
static int check_row(TF_OpKernelContext *ctx, const char *what, int64_t row)
{
    if (row > 0)
        return 1;
    char msg[200];
    snprintf(msg, sizeof msg,
             "herd: %s of a tensor with a zero-sized trailing dimension is not supported", what);
    fail_msg(ctx, TF_UNIMPLEMENTED, msg);
    return 0;
}

/* Output 0: the r->counts elements from every rank in r->recv, as rows shaped like input 0's. */
static int single_output_received(single_t *r)
{
    int64_t total = 0;
    for (int i = 0; i < r->size; i++)
        total += r->counts[i];
    size_t bytes = (size_t)total * (size_t)herd_dtype_size(r->in.dtype);
    return output_rows(r->ctx, 0, &r->in, total / r->row, r->recv, bytes, r->s) ||
           single_tf_fail(r);
}

static int submit_allgather(const herd_tf_kernel_t *k, single_t *r, herd_handle_t *h)
{
    return herd_allgatherv(k->name, TF_TensorData(r->in.t), r->in.count, r->row, r->in.dtype,
                           HERD_DEVICE_CPU, &r->recv, r->counts, h);
}

/* First dimensions may differ across ranks (herd_allgatherv); a scalar gathers as one row. */
static void compute_allgather(void *kp, TF_OpKernelContext *ctx)
{
    single_t r;
    single_init(&r, ctx);
    if (single_alloc_counts(&r, &r.counts) && single_input(&r, 0, &r.in)) {
        r.row = row_elems(&r.in);
        if (check_row(ctx, "allgather", r.row) && single_run(&r, kp, 1, submit_allgather))
            single_output_received(&r);
    }
    single_end(&r);
}

/* r->sendcounts from input 1 `splits` (rows per destination), or equal parts where it is
 * empty. */
static int alltoall_sendcounts(single_t *r)
{
    const int64_t *splits = TF_TensorData(r->sp.t);
    int64_t rows = r->in.dims[0];
    int size = r->size;
    char msg[256];
    if (r->sp.count == 0) {
        if (rows % size != 0) {
            snprintf(msg, sizeof msg,
                     "herd: alltoall without splits needs a first dimension divisible by the "
                     "number of ranks (%lld rows, %d ranks)",
                     (long long)rows, size);
            fail_msg(r->ctx, TF_INVALID_ARGUMENT, msg);
            return 0;
        }
        for (int i = 0; i < size; i++)
            r->sendcounts[i] = rows / size * r->row;
        return 1;
    }
    int64_t sum = 0;
    int bad = r->sp.count != size || r->sp.dtype != HERD_INT64;
    for (int i = 0; !bad && i < size; i++) {
        bad = splits[i] < 0;
        sum += splits[i];
        r->sendcounts[i] = splits[i] * r->row;
    }
    if (bad || sum != rows) {
        snprintf(msg, sizeof msg,
                 "herd: alltoall splits must be %d non-negative int64 row counts summing to "
                 "the first dimension (%lld)",
                 size, (long long)rows);
        fail_msg(r->ctx, TF_INVALID_ARGUMENT, msg);
        return 0;
    }
    return 1;
}

static int submit_alltoall(const herd_tf_kernel_t *k, single_t *r, herd_handle_t *h)
{
    return herd_alltoallv(k->name, TF_TensorData(r->in.t), r->sendcounts, r->row, r->in.dtype,
                          HERD_DEVICE_CPU, &r->recv, r->counts, h);
}

/* Input 1 `splits` (int64, herd_size() rows per destination, or empty for equal parts);
 * outputs the received rows and `received_splits` (int64, rows from each rank). */
static void compute_alltoall(void *kp, TF_OpKernelContext *ctx)
{
    single_t r;
    single_init(&r, ctx);
    if (!single_alloc_counts(&r, &r.sendcounts) || !single_alloc_counts(&r, &r.counts) ||
        !single_input(&r, 0, &r.in) || !single_input(&r, 1, &r.sp) ||
        !single_need_rows(&r, "alltoall"))
        goto done;
    r.row = row_elems(&r.in);
    if (!check_row(ctx, "alltoall", r.row) || !alltoall_sendcounts(&r) ||
        !single_run(&r, kp, 1, submit_alltoall) || !single_output_received(&r))
        goto done;
    for (int i = 0; i < r.size; i++)
        r.counts[i] /= r.row;
    int64_t sdim = r.size;
    size_t bytes = (size_t)r.size * sizeof(int64_t);
    TF_Tensor *rs = TF_AllocateOutput(ctx, 1, TF_INT64, &sdim, 1, bytes, r.s);
    if (rs == NULL || TF_GetCode(r.s) != TF_OK) {
        single_tf_fail(&r);
        goto done;
    }
    memcpy(TF_TensorData(rs), r.counts, bytes);
    TF_DeleteTensor(rs);
done:
    single_end(&r);
}

/* Output 0: this rank's rows of the result. */
static int reducescatter_output(single_t *r)
{
    int64_t mine = herd_reducescatter_rows(r->in.dims[0], r->size, herd_rank());
    int64_t dims[HERD_TF_MAX_DIMS];
    memcpy(dims, r->in.dims, sizeof(int64_t) * (size_t)r->in.ndims);
    dims[0] = mine;
    size_t bytes = (size_t)(mine * r->row) * (size_t)herd_dtype_size(r->in.dtype);
    r->out = TF_AllocateOutput(r->ctx, 0, r->in.tf_dtype, dims, r->in.ndims, bytes, r->s);
    return (r->out != NULL && TF_GetCode(r->s) == TF_OK) || single_tf_fail(r);
}

static int submit_reducescatter(const herd_tf_kernel_t *k, single_t *r, herd_handle_t *h)
{
    return herd_reducescatterv(k->name, TF_TensorData(r->in.t), TF_TensorData(r->out),
                               r->in.dims[0], r->row, r->in.dtype, k->reduce_op,
                               HERD_DEVICE_CPU, h);
}

/* Rows split as Horovod does: the first rows % size ranks get one more (herd_reducescatterv). */
static void compute_reducescatter(void *kp, TF_OpKernelContext *ctx)
{
    single_t r;
    single_init(&r, ctx);
    if (single_input(&r, 0, &r.in) && single_need_rows(&r, "reducescatter")) {
        r.row = row_elems(&r.in);
        if (reducescatter_output(&r))
            single_run(&r, kp, 0, submit_reducescatter);
    }
    single_end(&r);
}

/* ---- shape functions ------------------------------------------------------------------------ */

/* Every output has its input's shape (allreduce, grouped allreduce, broadcast). */
static void shape_unchanged(TF_ShapeInferenceContext *ctx, TF_Status *s)
{
    TF_ShapeHandle *h = TF_NewShapeHandle();
    int64_t n = TF_ShapeInferenceContextNumInputs(ctx);
    for (int64_t i = 0; i < n && TF_GetCode(s) == TF_OK; i++) {
        TF_ShapeInferenceContextGetInput(ctx, (int)i, h, s);
        if (TF_GetCode(s) == TF_OK)
            TF_ShapeInferenceContextSetOutput(ctx, (int)i, h, s);
    }
    TF_DeleteShapeHandle(h);
}

/* Output 0: the input's shape with an unknown first dimension (a scalar becomes a vector). */
static void set_unknown_rows(TF_ShapeInferenceContext *ctx, TF_Status *s)
{
    TF_ShapeHandle *in = TF_NewShapeHandle();
    TF_ShapeHandle *tail = TF_NewShapeHandle();
    TF_ShapeHandle *out = TF_NewShapeHandle();
    /* An unknown dimension: TensorFlow's kUnknownDim is -1. */
    TF_ShapeHandle *head = TF_ShapeInferenceContextVectorFromSize(ctx, (size_t)-1);
    TF_ShapeInferenceContextGetInput(ctx, 0, in, s);
    if (TF_GetCode(s) != TF_OK)
        goto done;
    if (!TF_ShapeInferenceContextRankKnown(ctx, in)) {
        TF_ShapeInferenceContextSetOutput(ctx, 0, in, s);
        goto done;
    }
    int64_t rank = TF_ShapeInferenceContextRank(ctx, in);
    if (rank == 0) {
        TF_ShapeInferenceContextSetOutput(ctx, 0, head, s);
        goto done;
    }
    TF_ShapeInferenceContextSubshape(ctx, in, 1, rank, tail, s);
    if (TF_GetCode(s) == TF_OK)
        TF_ShapeInferenceContextConcatenateShapes(ctx, head, tail, out, s);
    if (TF_GetCode(s) == TF_OK)
        TF_ShapeInferenceContextSetOutput(ctx, 0, out, s);
done:
    TF_DeleteShapeHandle(head);
    TF_DeleteShapeHandle(out);
    TF_DeleteShapeHandle(tail);
    TF_DeleteShapeHandle(in);
}

static void shape_rows(TF_ShapeInferenceContext *ctx, TF_Status *s)
{
    set_unknown_rows(ctx, s);
}

static void shape_alltoall(TF_ShapeInferenceContext *ctx, TF_Status *s)
{
    set_unknown_rows(ctx, s);
    if (TF_GetCode(s) != TF_OK)
        return;
    TF_ShapeHandle *v = TF_ShapeInferenceContextVectorFromSize(ctx, (size_t)-1);
    TF_ShapeInferenceContextSetOutput(ctx, 1, v, s);
    TF_DeleteShapeHandle(v);
}

/* ---- registration --------------------------------------------------------------------------- */

typedef struct op_spec {
    const char *op;
    const char *inputs[2];
    const char *outputs[2];
    const char *attrs[6];
    void (*shape)(TF_ShapeInferenceContext *, TF_Status *);
    void *(*create)(TF_OpKernelConstruction *);
    void (*compute)(void *, TF_OpKernelContext *);
} op_spec_t;

static const op_spec_t specs[] = {
    {"HerdAllreduce",
     {"tensor: T", NULL},
     {"output: T", NULL},
     {"T: " HERD_TF_TYPES, "reduce_op: int", "prescale_factor: float = 1.0",
      "postscale_factor: float = 1.0", "tensor_name: string = ''", NULL},
     shape_unchanged, create_allreduce, compute_allreduce},
    {"HerdGroupedAllreduce",
     {"tensors: T", NULL},
     {"outputs: T", NULL},
     {"T: list(" HERD_TF_TYPES ") >= 1", "reduce_op: int", "prescale_factor: float = 1.0",
      "postscale_factor: float = 1.0", "tensor_name: string = ''", NULL},
     shape_unchanged, create_grouped, compute_grouped},
    {"HerdAllgather",
     {"tensor: T", NULL},
     {"output: T", NULL},
     {"T: " HERD_TF_TYPES, "tensor_name: string = ''", NULL},
     shape_rows, create_allgather, compute_allgather},
    {"HerdBroadcast",
     {"tensor: T", NULL},
     {"output: T", NULL},
     {"T: " HERD_TF_TYPES, "root_rank: int", "tensor_name: string = ''", NULL},
     shape_unchanged, create_broadcast, compute_broadcast},
    {"HerdAlltoall",
     {"tensor: T", "splits: int64"},
     {"output: T", "received_splits: int64"},
     {"T: " HERD_TF_TYPES, "tensor_name: string = ''", NULL},
     shape_alltoall, create_alltoall, compute_alltoall},
    {"HerdReducescatter",
     {"tensor: T", NULL},
     {"output: T", NULL},
     {"T: " HERD_TF_TYPES, "reduce_op: int", "tensor_name: string = ''", NULL},
     shape_rows, create_reducescatter, compute_reducescatter},
};

static void register_one(const op_spec_t *spec)
{
    TF_Status *s = TF_NewStatus();
    TF_OpDefinitionBuilder *b = TF_NewOpDefinitionBuilder(spec->op);
    for (int i = 0; i < 2 && spec->inputs[i] != NULL; i++)
        TF_OpDefinitionBuilderAddInput(b, spec->inputs[i]);
    for (int i = 0; i < 2 && spec->outputs[i] != NULL; i++)
        TF_OpDefinitionBuilderAddOutput(b, spec->outputs[i]);
    for (int i = 0; i < 6 && spec->attrs[i] != NULL; i++)
        TF_OpDefinitionBuilderAddAttr(b, spec->attrs[i]);
    TF_OpDefinitionBuilderSetIsStateful(b, 1);
    TF_OpDefinitionBuilderSetShapeInferenceFunction(b, spec->shape);
    TF_RegisterOpDefinition(b, s);
    if (TF_GetCode(s) != TF_OK) {
        fprintf(stderr, "herd: registering op %s failed: %s\n", spec->op, TF_Message(s));
        TF_DeleteStatus(s);
        return;
    }
    TF_KernelBuilder *kb =
        TF_NewKernelBuilder(spec->op, "CPU", spec->create, spec->compute, delete_kernel);
    char kernel_name[64];
    snprintf(kernel_name, sizeof kernel_name, "%sCpu", spec->op);
    TF_RegisterKernelBuilder(kernel_name, kb, s);
    if (TF_GetCode(s) != TF_OK)
        fprintf(stderr, "herd: registering the CPU kernel of %s failed: %s\n", spec->op,
                TF_Message(s));
    TF_DeleteStatus(s);
}

/* Runs when TensorFlow dlopen()s the library (tf.load_op_library): TensorFlow collects the ops
 * and kernels registered during the load. */
__attribute__((constructor)) static void herd_tf_register(void)
{
    abi_ok = herd_abi_version() == HERD_ABI_VERSION;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        register_one(&specs[i]);
}
