/* test_collectives.c - GPU herd_push_pull and herd_broadcast on cudaMalloc'd memory: every dtype
 * x every op, in place and out of place, counts 0, 1, 1027 and around the fusion threshold (one
 * element under it, exactly at it, a few past it), broadcast from every root, host and GPU ops in
 * flight together, the fusion buffer growing, and herd restarted. Registered fused (a small
 * HERD_FUSION_THRESHOLD), unfused (0) and with the defaults, over NCCL and over the MPI staging.
 * Every expected value is exact: mt_fill()'s values, copied to the device and back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_kinds.h"
#include "gpu_test.h"
#include "herd.h"

enum { NSIZES = 6 };

/* Counts around the fusion threshold, capped at 1 MiB so memory stays modest (the defaults,
 * 64 MiB, fuse everything here; HERD_FUSION_THRESHOLD=0 sends everything alone). */
static void sizes_for(int dtype, int64_t out[NSIZES])
{
    int64_t t = mt_fusion_threshold();
    if (t > (INT64_C(1) << 20))
        t = INT64_C(1) << 20;
    int64_t around = t / (int64_t)mt_dtype_size(dtype);
    if (around < 4)
        around = 4;
    const int64_t s[NSIZES] = {0, 1, 1027, around - 1, around, around + 3};
    memcpy(out, s, sizeof s);
}

typedef struct gpu_case {
    char name[112];
    int kind; /* 0 allreduce, 1 broadcast */
    int dtype, op, root, in_place;
    int64_t count;
    uint64_t salt;
    void *send, *recv; /* device; broadcast uses recv only */
    void *orig;        /* host copy of what must come back unchanged */
    herd_handle_t handle;
} gpu_case_t;

static size_t case_bytes(const gpu_case_t *c)
{
    return (size_t)c->count * mt_dtype_size(c->dtype);
}

static void setup_allreduce(gpu_case_t *c, int dtype, int op, int64_t count, int in_place,
                            uint64_t salt, const char *tag)
{
    memset(c, 0, sizeof *c);
    c->kind = 0;
    c->dtype = dtype;
    c->op = op;
    c->root = -1;
    c->count = count;
    c->in_place = in_place;
    c->salt = salt;
    snprintf(c->name, sizeof c->name, "gpu.ar.%s.%s.%s.n%lld.%s", tag, mt_dtype_name(dtype),
             mt_op_name(op), (long long)count, in_place ? "inplace" : "outofplace");
    if (count == 0 && in_place)
        return; /* NULL buffers are allowed with count 0 */
    size_t bytes = case_bytes(c);
    void *host = mt_alloc(bytes);
    mt_fill(dtype, op, mt_rank, salt, host, count);
    c->send = gt_dev_alloc(bytes);
    gt_to_device(c->send, host, bytes);
    if (in_place) {
        c->recv = c->send;
        free(host);
    } else {
        c->recv = gt_dev_alloc(bytes);
        GT_CUDA(cudaMemset(c->recv, 0x5a, bytes < 64 ? 64 : bytes)); /* garbage to overwrite */
        c->orig = host;
    }
}

static void setup_broadcast(gpu_case_t *c, int dtype, int root, int64_t count, uint64_t salt,
                            const char *tag)
{
    memset(c, 0, sizeof *c);
    c->kind = 1;
    c->dtype = dtype;
    c->op = MT_BCAST;
    c->root = root;
    c->count = count;
    c->salt = salt;
    snprintf(c->name, sizeof c->name, "gpu.bc.%s.root%d.%s.n%lld", tag, root,
             mt_dtype_name(dtype), (long long)count);
    if (count == 0)
        return;
    size_t bytes = case_bytes(c);
    c->recv = gt_dev_alloc(bytes);
    if (mt_rank == root) {
        c->orig = mt_alloc(bytes);
        mt_fill(dtype, MT_BCAST, root, salt, c->orig, count);
        gt_to_device(c->recv, c->orig, bytes);
    } else {
        GT_CUDA(cudaMemset(c->recv, 0xa5, bytes));
    }
}

static void submit(gpu_case_t *c)
{
    c->handle = -1;
    int rc = c->kind == 0 ? herd_push_pull(c->name, c->send, c->recv, c->count, c->dtype, c->op,
                                           gt_device, &c->handle)
                          : herd_broadcast(c->name, c->recv, c->count, c->dtype, c->root,
                                           gt_device, &c->handle);
    MT_CHECK_STATUS(rc, HERD_OK);
    MT_CHECK(c->handle > 0);
}

static void finish(gpu_case_t *c)
{
    MT_CHECK_STATUS(mt_wait(c->handle, c->name), HERD_OK);
    size_t bytes = case_bytes(c);
    if (c->count > 0) {
        void *got = mt_alloc(bytes);
        gt_to_host(got, c->recv, bytes);
        if (c->kind == 0)
            MT_CHECK(mt_verify_allreduce(c->dtype, c->op, mt_size, c->salt, got, c->count,
                                         c->name) == 0);
        else
            MT_CHECK(mt_verify_broadcast(c->dtype, c->root, c->salt, got, c->count, c->name) ==
                     0);
        if (c->orig != NULL) {
            /* Out of place, sendbuf is only read; a broadcast root's buffer is only read. */
            gt_to_host(got, c->kind == 0 ? c->send : c->recv, bytes);
            int same = memcmp(got, c->orig, bytes) == 0;
            if (!same)
                fprintf(stderr, "[rank %d] %s: the %s was modified\n", mt_rank, c->name,
                        c->kind == 0 ? "sendbuf" : "root's buffer");
            MT_CHECK(same);
        }
        free(got);
    }
    MT_CHECK_STATUS(herd_wait_handle(c->handle, 0), HERD_ERR_NOT_FOUND);
    if (c->send != NULL)
        GT_CUDA(cudaFree(c->send));
    if (c->recv != NULL && c->recv != c->send)
        GT_CUDA(cudaFree(c->recv));
    free(c->orig);
    memset(c, 0, sizeof *c);
}

/* Every op, size and placement of one dtype submitted together, waited in reverse order. */
static void run_dtype(int dtype)
{
    int64_t sizes[NSIZES];
    sizes_for(dtype, sizes);
    enum { N = MT_NUM_OPS * NSIZES * 2 };
    gpu_case_t *cases = calloc(N, sizeof *cases);
    int n = 0;
    for (int op = 0; op < MT_NUM_OPS; op++)
        for (int s = 0; s < NSIZES; s++)
            for (int in_place = 0; in_place < 2; in_place++, n++)
                setup_allreduce(&cases[n], dtype, op, sizes[s], in_place,
                                mt_mix((uint64_t)(dtype * 1000 + op * 100 + s * 10 + in_place)),
                                "dt");
    for (int i = 0; i < n; i++)
        submit(&cases[i]);
    for (int i = n - 1; i >= 0; i--)
        finish(&cases[i]);
    free(cases);
}

static void test_uint8(void) { run_dtype(HERD_UINT8); }
static void test_int8(void) { run_dtype(HERD_INT8); }
static void test_int32(void) { run_dtype(HERD_INT32); }
static void test_int64(void) { run_dtype(HERD_INT64); }
static void test_float16(void) { run_dtype(HERD_FLOAT16); }
static void test_bfloat16(void) { run_dtype(HERD_BFLOAT16); }
static void test_float32(void) { run_dtype(HERD_FLOAT32); }
static void test_float64(void) { run_dtype(HERD_FLOAT64); }

/* One op at a time: each is alone in its round, so it takes the unfused path. */
static void test_one_at_a_time(void)
{
    const int64_t sizes[3] = {0, 1, 1027};
    for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++)
        for (int op = 0; op < MT_NUM_OPS; op++)
            for (int s = 0; s < 3; s++) {
                gpu_case_t c;
                setup_allreduce(&c, dtype, op, sizes[s], (dtype + op + s) % 2,
                                mt_mix((uint64_t)(77000 + dtype * 100 + op * 10 + s)), "one");
                submit(&c);
                finish(&c);
            }
}

/* Every dtype and op at once, submitted and waited in a different order on every rank. */
static void test_all_at_once_shuffled(void)
{
    const int64_t sizes[3] = {1, 1027, 4099};
    int total = MT_NUM_DTYPES * MT_NUM_OPS * 3;
    gpu_case_t *cases = calloc((size_t)total, sizeof *cases);
    int64_t *order = calloc((size_t)total, sizeof *order);
    int n = 0;
    for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++)
        for (int op = 0; op < MT_NUM_OPS; op++)
            for (int s = 0; s < 3; s++, n++)
                setup_allreduce(&cases[n], dtype, op, sizes[s], n % 2,
                                mt_mix((uint64_t)(99000 + n)), "mix");
    for (int i = 0; i < n; i++)
        order[i] = i;
    mt_rng_t rng = {.state = 1000 + (uint64_t)mt_rank};
    mt_shuffle(&rng, order, n);
    for (int i = 0; i < n; i++)
        submit(&cases[order[i]]);
    mt_shuffle(&rng, order, n);
    for (int i = 0; i < n; i++)
        finish(&cases[order[i]]);
    free(order);
    free(cases);
}

/* The same names for several steps with new values (the cached path, reused handle slots and
 * their CUDA events). */
static void test_repeat_cached(void)
{
    for (int step = 0; step < 4; step++) {
        gpu_case_t cases[MT_NUM_DTYPES];
        for (int d = 0; d < MT_NUM_DTYPES; d++)
            setup_allreduce(&cases[d], d, HERD_SUM, 513, step % 2,
                            mt_mix((uint64_t)(5000 + step * 10 + d)), "rep");
        for (int d = 0; d < MT_NUM_DTYPES; d++)
            submit(&cases[d]);
        for (int d = 0; d < MT_NUM_DTYPES; d++)
            finish(&cases[d]);
    }
}

/* Broadcast: every root, dtype and size at once, waited in reverse order. */
static void test_broadcast_every_root_at_once(void)
{
    int n = mt_size * MT_NUM_DTYPES * NSIZES;
    gpu_case_t *cases = calloc((size_t)n, sizeof *cases);
    int k = 0;
    for (int root = 0; root < mt_size; root++)
        for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++) {
            int64_t sizes[NSIZES];
            sizes_for(dtype, sizes);
            for (int s = 0; s < NSIZES; s++, k++)
                setup_broadcast(&cases[k], dtype, root, sizes[s], mt_mix((uint64_t)(300 + k)),
                                "all");
        }
    for (int i = 0; i < n; i++)
        submit(&cases[i]);
    for (int i = n - 1; i >= 0; i--)
        finish(&cases[i]);
    free(cases);
}

/* Broadcast: one root and dtype at a time. */
static void test_broadcast_each_root_in_turn(void)
{
    for (int root = 0; root < mt_size; root++)
        for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++) {
            int64_t sizes[NSIZES];
            sizes_for(dtype, sizes);
            gpu_case_t cases[NSIZES];
            for (int s = 0; s < NSIZES; s++)
                setup_broadcast(&cases[s], dtype, root, sizes[s],
                                mt_mix((uint64_t)(root * 1000 + dtype * 10 + s)), "turn");
            for (int s = 0; s < NSIZES; s++)
                submit(&cases[s]);
            for (int s = 0; s < NSIZES; s++)
                finish(&cases[s]);
        }
}

/* Host and GPU ops in flight together: host groups and GPU groups of one round. */
static void test_host_and_gpu_together(void)
{
    enum { N = 2048 };
    float *host = mt_alloc(N * sizeof *host);
    mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, 4343, host, N);
    gpu_case_t ar, bc;
    setup_allreduce(&ar, HERD_FLOAT32, HERD_SUM, N, 0, mt_mix(4242), "hostmix");
    setup_broadcast(&bc, HERD_INT32, mt_size - 1, N, mt_mix(4444), "hostmix");
    herd_handle_t h = 0;
    submit(&ar);
    MT_CHECK_STATUS(herd_push_pull("gpu.hostmix.host", host, host, N, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    submit(&bc);
    MT_CHECK_STATUS(mt_wait(h, "gpu.hostmix.host"), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, 4343, host, N,
                                 "gpu.hostmix.host") == 0);
    finish(&bc);
    finish(&ar);
    free(host);
}

/* Fused groups of growing size, then a small one again: one fusion buffer, made at the fusion
 * threshold's size when a fused group first needs it, holds them all, so no group of a run's
 * steady state waits for the stream to reallocate it (an uneven reduce-scatter past the
 * threshold grows it: gpu_kinds.c). */
static void test_fused_groups_of_growing_size(void)
{
    for (int step = 1; step <= 4; step++) {
        int n = 4 * step;
        gpu_case_t *cases = calloc((size_t)n, sizeof *cases);
        for (int i = 0; i < n; i++) {
            setup_allreduce(&cases[i], HERD_FLOAT32, HERD_SUM, 1000 + 257 * step, 0,
                            mt_mix((uint64_t)(7000 + step * 100 + i)), "grow");
            snprintf(cases[i].name, sizeof cases[i].name, "gpu.grow.s%d.t%d", step, i);
        }
        for (int i = 0; i < n; i++)
            submit(&cases[i]);
        for (int i = 0; i < n; i++)
            finish(&cases[i]);
        free(cases);
    }
    gpu_case_t c;
    setup_allreduce(&c, HERD_FLOAT64, HERD_MAX, 5, 1, mt_mix(7999), "grow.small");
    submit(&c);
    finish(&c);
}

/* herd shut down and started again: the GPU plane (NCCL communicator, stream, buffers) is torn
 * down and built again; handle slots keep their CUDA events. */
static void test_restart(void)
{
    gpu_case_t c;
    setup_allreduce(&c, HERD_FLOAT32, HERD_SUM, 4099, 0, mt_mix(8100), "restart.before");
    submit(&c);
    finish(&c);
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    MT_CHECK(herd_initialized() == 0);
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    for (int i = 0; i < 2; i++) {
        setup_allreduce(&c, HERD_INT64, HERD_MIN, 1027, i, mt_mix((uint64_t)(8200 + i)),
                        "restart.after");
        submit(&c);
        finish(&c);
        setup_broadcast(&c, HERD_BFLOAT16, i % mt_size, 333, mt_mix((uint64_t)(8300 + i)),
                        "restart.after");
        submit(&c);
        finish(&c);
    }
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"uint8", test_uint8},
        {"int8", test_int8},
        {"int32", test_int32},
        {"int64", test_int64},
        {"float16", test_float16},
        {"bfloat16", test_bfloat16},
        {"float32", test_float32},
        {"float64", test_float64},
        {"one_at_a_time", test_one_at_a_time},
        {"all_at_once_shuffled", test_all_at_once_shuffled},
        {"repeat_cached", test_repeat_cached},
        {"broadcast_every_root_at_once", test_broadcast_every_root_at_once},
        {"broadcast_each_root_in_turn", test_broadcast_each_root_in_turn},
        {"host_and_gpu_together", test_host_and_gpu_together},
        {"fused_groups_of_growing_size", test_fused_groups_of_growing_size},
        {"other_kinds", gt_test_other_kinds},
        {"restart", test_restart},
    };
    return gt_main(argc, argv, "gpu_collectives", tests, sizeof tests / sizeof tests[0]);
}
