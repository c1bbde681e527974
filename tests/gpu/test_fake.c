/* test_fake.c - the GPU plane's logic on a machine without a GPU: herd loads the fake CUDA
 * runtime, driver and NCCL of fake_cuda.c (HERD_CUDART_LIBRARY, HERD_CUDA_DRIVER_LIBRARY,
 * HERD_NCCL_LIBRARY), which this program links in place of libcudart.
 *
 * What it proves: device memory passed as host memory is refused even as the first GPU-related
 * call; results are exact (fake NCCL is MPI); herd never makes a context on a device the thread
 * did not use, and puts back the caller's; a failure before the collective on one rank (fusion
 * buffer cudaMalloc, cudaStreamWaitEvent) gives HERD_ERR_BACKEND on every rank and herd keeps
 * working; a collective that never completes is aborted (NCCL's asynchronous error on one rank,
 * HERD_STALL_TIMEOUT_SECONDS on the other) with HERD_ERR_BACKEND on every rank, and no hang.
 * Run under mpiexec -n 2 with HERD_FAKE_CUDA_DEVICES=2 (one fake device per rank).
 */
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_cuda.h"
#include "gpu_kinds.h"
#include "gpu_test.h"
#include "herd.h"

enum { N = 1027, BIG = 20000 /* float32: 80 KB, past the 64 KiB fusion threshold */ };

/* Every rank's status for one op must be the same; returns 1 if so. */
static int statuses_agree(int rc)
{
    int lo = rc, hi = rc;
    MPI_Allreduce(&rc, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&rc, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (lo != hi && mt_rank == 0)
        fprintf(stderr, "ranks disagree: statuses from %s to %s\n", herd_status_name(lo),
                herd_status_name(hi));
    return lo == hi;
}

/* A device tensor of n float32 filled with mt_fill's values for `salt`. */
static float *device_filled(int64_t n, uint64_t salt)
{
    float *host = mt_alloc((size_t)n * sizeof *host);
    mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, salt, host, n);
    float *dev = gt_dev_alloc((size_t)n * sizeof *dev);
    gt_to_device(dev, host, (size_t)n * sizeof *dev);
    free(host);
    return dev;
}

static int check_sum(const float *dev, int64_t n, uint64_t salt, const char *what)
{
    float *got = mt_alloc((size_t)n * sizeof *got);
    gt_to_host(got, dev, (size_t)n * sizeof *got);
    int bad = mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, salt, got, n, what) != 0;
    free(got);
    return !bad;
}

/* An in-place SUM of a fresh device tensor under `name`; returns its status (waited with -1, so
 * the message is the op's own). */
static int sum_once(const char *name, int64_t n, uint64_t salt, int check)
{
    float *dev = device_filled(n, salt);
    herd_handle_t h = 0;
    int rc = herd_push_pull(name, dev, dev, n, HERD_FLOAT32, HERD_SUM, gt_device, &h);
    if (rc == HERD_OK)
        rc = herd_wait_handle(h, -1);
    if (rc == HERD_OK && check)
        MT_CHECK(check_sum(dev, n, salt, name));
    GT_CUDA(cudaFree(dev));
    return rc;
}

/* First, before herd has seen any GPU op: device memory as HERD_DEVICE_CPU is refused (the
 * process has a CUDA context: the harness made one), and pinned host memory is host memory. */
static void test_device_pointer_as_host_first(void)
{
    float *dev = gt_dev_alloc(N * sizeof *dev);
    herd_handle_t h = 0;
    int rc = herd_push_pull("fake.d_as_h", dev, dev, N, HERD_FLOAT32, HERD_SUM, HERD_DEVICE_CPU,
                            &h);
    MT_CHECK_STATUS(rc, HERD_ERR_INVALID_ARG);
    MT_CHECK(mt_last_error_has("is memory of CUDA device"));
    float *pinned = NULL;
    GT_CUDA(cudaMallocHost((void **)&pinned, N * sizeof *pinned));
    uint64_t salt = mt_mix(11);
    mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, salt, pinned, N);
    MT_CHECK_STATUS(herd_push_pull("fake.pinned_host", pinned, pinned, N, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "fake.pinned_host"), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, salt, pinned, N,
                                 "fake.pinned_host") == 0);
    GT_CUDA(cudaFreeHost(pinned));
    GT_CUDA(cudaFree(dev));
}

/* Four small tensors (fused when they meet in a round), a big one alone, and a broadcast from the
 * last rank: exact results. */
static void test_exact_results(void)
{
    enum { K = 4 };
    float *dev[K + 1];
    herd_handle_t h[K + 1];
    char name[64];
    for (int i = 0; i <= K; i++) {
        dev[i] = device_filled(i < K ? N : BIG, mt_mix((uint64_t)(20 + i)));
        snprintf(name, sizeof name, "fake.sum.%d", i);
        MT_CHECK_STATUS(herd_push_pull(name, dev[i], dev[i], i < K ? N : BIG, HERD_FLOAT32,
                                       HERD_SUM, gt_device, &h[i]),
                        HERD_OK);
    }
    for (int i = K; i >= 0; i--) {
        snprintf(name, sizeof name, "fake.sum.%d", i);
        MT_CHECK_STATUS(mt_wait(h[i], name), HERD_OK);
        MT_CHECK(check_sum(dev[i], i < K ? N : BIG, mt_mix((uint64_t)(20 + i)), name));
        GT_CUDA(cudaFree(dev[i]));
    }
    int root = mt_size - 1;
    uint64_t salt = mt_mix(30);
    int32_t *host = mt_alloc(N * sizeof *host);
    mt_fill(HERD_INT32, MT_BCAST, mt_rank, salt, host, N);
    int32_t *b = gt_dev_alloc(N * sizeof *b);
    gt_to_device(b, host, N * sizeof *b);
    herd_handle_t hb = 0;
    MT_CHECK_STATUS(herd_broadcast("fake.bcast", b, N, HERD_INT32, root, gt_device, &hb), HERD_OK);
    MT_CHECK_STATUS(mt_wait(hb, "fake.bcast"), HERD_OK);
    gt_to_host(host, b, N * sizeof *b);
    MT_CHECK(mt_verify_broadcast(HERD_INT32, root, salt, host, N, "fake.bcast") == 0);
    GT_CUDA(cudaFree(b));
    free(host);
}

/* No context is ever made on a device the application did not use, and the caller's current
 * context is the one it had. */
typedef struct fresh {
    float *dev;
    int ok;
} fresh_t;

static void *submit_from_fresh_thread(void *arg)
{
    fresh_t *f = arg;
    /* A new thread has no current context; its runtime device is 0. */
    f->ok = herd_fake_cuda_current_device() == -1;
    herd_handle_t h = 0;
    f->ok &= herd_push_pull("fake.fresh_thread", f->dev, f->dev, N, HERD_FLOAT32, HERD_SUM,
                            gt_device, &h) == HERD_OK;
    f->ok &= herd_wait_handle(h, -1) == HERD_OK; /* may drive rounds on this thread */
    /* Device 0 is put back only where it already had a context (rank 0). Elsewhere the thread
     * keeps no context, or (after herd's cudaSetDevice moved the runtime's device and a round
     * driven by this wait put that back) the tensor's device: never a new one on device 0. */
    int cur = herd_fake_cuda_current_device();
    int fine = herd_fake_cuda_primary_active(0) ? cur == 0 : cur == -1 || cur == gt_device;
    if (!fine)
        fprintf(stderr, "[rank %d] fresh thread: current device %d after a submit\n", mt_rank,
                cur);
    f->ok &= fine;
    return NULL;
}

static void test_contexts(void)
{
    int other = 1 - gt_device;
    MT_CHECK_STATUS(sum_once("fake.ctx.main", N, mt_mix(41), 1), HERD_OK);
    MT_CHECK(herd_fake_cuda_current_device() == gt_device);
    fresh_t f = {device_filled(N, mt_mix(40)), 0};
    pthread_t t;
    MT_CHECK(pthread_create(&t, NULL, submit_from_fresh_thread, &f) == 0);
    pthread_join(t, NULL);
    MT_CHECK(f.ok);
    MT_CHECK(check_sum(f.dev, N, mt_mix(40), "fake.fresh_thread"));
    GT_CUDA(cudaFree(f.dev));
    if (herd_fake_cuda_primary_active(other))
        fprintf(stderr, "[rank %d] a context was made on device %d, which this rank never used\n",
                mt_rank, other);
    MT_CHECK(!herd_fake_cuda_primary_active(other));
    MT_CHECK(herd_fake_cuda_current_device() == gt_device);
}

/* Tests of what only the NCCL plane does: 1 (after rank 0 says why) where the suite runs the
 * staging plane. */
static int skipped_without_nccl(const char *why)
{
    if (!gt_nccl && mt_rank == 0)
        printf("%s\n", why);
    return !gt_nccl;
}

/* A batch of K tensors of N floats, filled from salt + i and submitted at once as prefix.i, so
 * that rounds may fuse them, after rank 1's cudaMallocs of fail_bytes or more are made to fail.
 * end_batch lifts the failure and frees them. */
static void start_batch(int k, float **dev, herd_handle_t *h, uint64_t salt, const char *prefix,
                        long fail_bytes)
{
    char name[64];
    for (int i = 0; i < k; i++)
        dev[i] = device_filled(N, mt_mix(salt + (uint64_t)i));
    if (mt_rank == 1)
        herd_fake_cuda_inject("fail_malloc_min_bytes", fail_bytes);
    for (int i = 0; i < k; i++) {
        snprintf(name, sizeof name, "%s.%d", prefix, i);
        MT_CHECK_STATUS(herd_push_pull(name, dev[i], dev[i], N, HERD_FLOAT32, HERD_SUM,
                                       gt_device, &h[i]),
                        HERD_OK);
    }
}

static void end_batch(int k, float **dev)
{
    herd_fake_cuda_inject("fail_malloc_min_bytes", 0);
    for (int i = 0; i < k; i++)
        GT_CUDA(cudaFree(dev[i]));
}

/* The fusion buffer's cudaMalloc fails on rank 1 only (as when a framework's caching allocator
 * holds the memory): every rank gets HERD_ERR_BACKEND for that group, nobody hangs, and the same
 * names work once memory is back. The buffer is made once, when a fused group first needs it, so
 * herd starts afresh first. Rounds decide which tensors meet in a group, so the submit is
 * repeated until a fused group has been tried. */
static void test_fusion_malloc_fails_on_one_rank(void)
{
    enum { K = 16 };
    int saw_failure = 0;
    char name[64];
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    for (int attempt = 0; attempt < 6 && !saw_failure; attempt++) {
        float *dev[K];
        herd_handle_t h[K];
        start_batch(K, dev, h, 50, "fake.oom", 1); /* rank 1: every cudaMalloc from now */
        for (int i = 0; i < K; i++) {
            snprintf(name, sizeof name, "fake.oom.%d", i);
            int rc = herd_wait_handle(h[i], -1);
            MT_CHECK(rc == HERD_OK || rc == HERD_ERR_BACKEND);
            MT_CHECK(statuses_agree(rc));
            if (rc == HERD_ERR_BACKEND) {
                saw_failure = 1;
                const char *want = mt_rank == 1 ? "cudaMalloc" : "another rank";
                if (!mt_last_error_has(want))
                    fprintf(stderr, "[rank %d] %s: message '%s' lacks '%s'\n", mt_rank, name,
                            herd_last_error(), want);
                MT_CHECK(mt_last_error_has(want));
            } else {
                MT_CHECK(check_sum(dev[i], N, mt_mix((uint64_t)(50 + i)), name));
            }
        }
        end_batch(K, dev);
    }
    MT_CHECK(saw_failure);
    MT_CHECK_STATUS(sum_once("fake.oom.0", N, mt_mix(60), 1), HERD_OK);
}

/* The threshold-sized fusion buffer cannot be had on rank 1 (a cudaMalloc of 64 KiB fails there,
 * smaller ones do not): that rank makes one of the group's own size, and every group still
 * succeeds, exactly, on every rank. Fused groups, which alone need the buffer, form as rounds
 * decide, so the submit is repeated until rank 1 has been refused once. NCCL only: the staging
 * path stages through pinned memory. */
static void test_fusion_buffer_falls_back(void)
{
    if (skipped_without_nccl("fusion_buffer_falls_back: NCCL only"))
        return;
    enum { K = 12 };
    char name[64];
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    long refused_before = herd_fake_cuda_malloc_refused();
    int fell_back = 0;
    for (int attempt = 0; attempt < 6 && !fell_back; attempt++) {
        float *dev[K];
        herd_handle_t h[K];
        start_batch(K, dev, h, 70, "fake.fallback", 65536); /* HERD_FUSION_THRESHOLD */
        for (int i = 0; i < K; i++) {
            snprintf(name, sizeof name, "fake.fallback.%d", i);
            MT_CHECK_STATUS(mt_wait(h[i], name), HERD_OK);
            MT_CHECK(check_sum(dev[i], N, mt_mix((uint64_t)(70 + i)), name));
        }
        end_batch(K, dev);
        int mine = mt_rank != 1 || herd_fake_cuda_malloc_refused() > refused_before;
        MPI_Allreduce(&mine, &fell_back, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    }
    MT_CHECK(fell_back);
}

/* cudaStreamWaitEvent on a producer's event fails on rank 0 only. */
static void test_stream_wait_fails_on_one_rank(void)
{
    if (mt_rank == 0)
        herd_fake_cuda_inject("fail_stream_wait", 1);
    int rc = sum_once("fake.wait_event", N, mt_mix(61), 0);
    herd_fake_cuda_inject("fail_stream_wait", 0);
    MT_CHECK_STATUS(rc, HERD_ERR_BACKEND);
    MT_CHECK(mt_last_error_has(mt_rank == 0 ? "cudaStreamWaitEvent" : "another rank"));
    MT_CHECK_STATUS(sum_once("fake.wait_event", N, mt_mix(62), 1), HERD_OK);
}

/* A GPU op that runs long on the device does not hold up herd: it is issued at once (a consumer
 * stream can wait on it), a host op submitted after it completes first, and the GPU op completes
 * when the device is done. (The collective itself runs over MPI only where NCCL is faked; the
 * staging path copies back asynchronously too, but its delay is not modelled.) */
static void test_device_work_does_not_block_herd(void)
{
    if (skipped_without_nccl("device_work_does_not_block_herd: NCCL only"))
        return;
    enum { DELAY_MS = 2000 };
    float *dev = device_filled(N, mt_mix(80));
    cudaStream_t consumer;
    GT_CUDA(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking));
    herd_fake_cuda_inject("collective_delay_ms", DELAY_MS);
    double t0 = gt_now_ms();
    herd_handle_t hg = 0, hh = 0;
    MT_CHECK_STATUS(herd_push_pull("fake.slow", dev, dev, N, HERD_FLOAT32, HERD_SUM, gt_device,
                                   &hg),
                    HERD_OK);
    int rc;
    while ((rc = herd_handle_stream_wait(hg, (void *)consumer)) == HERD_INPROGRESS &&
           gt_now_ms() - t0 < DELAY_MS)
        sched_yield();
    MT_CHECK_STATUS(rc, HERD_OK);
    float host[4] = {1, 2, 3, (float)mt_rank};
    MT_CHECK_STATUS(herd_push_pull("fake.host_meanwhile", host, host, 4, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &hh),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(hh, "fake.host_meanwhile"), HERD_OK);
    double host_done = gt_now_ms() - t0;
    int gpu_state = herd_poll_handle(hg);
    if (host_done >= DELAY_MS * 0.75 || gpu_state != HERD_INPROGRESS)
        fprintf(stderr, "[rank %d] host op done after %.0f ms, GPU op %s\n", mt_rank, host_done,
                herd_status_name(gpu_state));
    MT_CHECK(host_done < DELAY_MS * 0.75);
    MT_CHECK(gpu_state == HERD_INPROGRESS);
    MT_CHECK(host[0] == (float)mt_size && host[3] == (float)(mt_size * (mt_size - 1) / 2));
    MT_CHECK_STATUS(herd_wait_handle(hg, -1), HERD_OK);
    MT_CHECK(gt_now_ms() - t0 >= DELAY_MS * 0.9);
    herd_fake_cuda_inject("collective_delay_ms", 0);
    MT_CHECK(check_sum(dev, N, mt_mix(80), "fake.slow"));
    GT_CUDA(cudaStreamDestroy(consumer));
    GT_CUDA(cudaFree(dev));
}

/* The collective never completes on any rank; rank 1's NCCL reports an asynchronous error. Rank
 * 1 aborts at once, rank 0 after HERD_STALL_TIMEOUT_SECONDS: HERD_ERR_BACKEND everywhere. The
 * GPU plane is then stopped (later GPU ops fail), host ops still work. Runs last. */
static void test_hung_collective_is_aborted(void)
{
    if (skipped_without_nccl("hung_collective_is_aborted: NCCL only (the staging path has no "
                             "async error)"))
        return;
    herd_fake_cuda_inject("nccl_hang", 1);
    if (mt_rank == 1)
        herd_fake_cuda_inject("nccl_async_error", 1);
    double t0 = gt_now_ms();
    int rc = sum_once("fake.hang", N, mt_mix(70), 0);
    double took = gt_now_ms() - t0;
    herd_fake_cuda_inject("nccl_hang", 0);
    herd_fake_cuda_inject("nccl_async_error", 0);
    MT_CHECK_STATUS(rc, HERD_ERR_BACKEND);
    const char *want = mt_rank == 1 ? "asynchronous" : "did not complete within";
    if (!mt_last_error_has(want))
        fprintf(stderr, "[rank %d] message '%s' lacks '%s'\n", mt_rank, herd_last_error(), want);
    MT_CHECK(mt_last_error_has(want));
    MT_CHECK(herd_fake_cuda_aborted());
    MT_CHECK(took < 30000);
    MT_CHECK(statuses_agree(rc));
    rc = sum_once("fake.after_abort", N, mt_mix(71), 0);
    MT_CHECK_STATUS(rc, HERD_ERR_BACKEND);
    MT_CHECK(mt_last_error_has("GPU plane stopped"));
    float host[4] = {1, 2, 3, 4};
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("fake.host_after_abort", host, host, 4, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "fake.host_after_abort"), HERD_OK);
    MT_CHECK(host[3] == 4.0f * (float)mt_size);
}

/* Run alone, with HERD_FAKE_NCCL_VERSION older than 2.11: the GPU plane does not start, on any
 * rank, with a message naming the version; later GPU ops fail at once without trying the whole
 * start again (no new stream is made); host ops work. */
static void test_old_nccl_refused(void)
{
    MT_CHECK_STATUS(sum_once("fake.old_nccl", N, mt_mix(90), 0), HERD_ERR_BACKEND);
    MT_CHECK(mt_last_error_has("2.11"));
    int streams = herd_fake_cuda_streams_created();
    MT_CHECK_STATUS(sum_once("fake.old_nccl.again", N, mt_mix(91), 0), HERD_ERR_BACKEND);
    MT_CHECK(mt_last_error_has("2.11"));
    MT_CHECK(herd_fake_cuda_streams_created() == streams);
    double host[2] = {1, (double)mt_rank};
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("fake.old_nccl.host", host, host, 2, HERD_FLOAT64, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "fake.old_nccl.host"), HERD_OK);
    MT_CHECK(host[0] == (double)mt_size);
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"device_pointer_as_host_first", test_device_pointer_as_host_first},
        {"exact_results", test_exact_results},
        {"contexts", test_contexts},
        {"fusion_malloc_fails_on_one_rank", test_fusion_malloc_fails_on_one_rank},
        {"fusion_buffer_falls_back", test_fusion_buffer_falls_back},
        {"stream_wait_fails_on_one_rank", test_stream_wait_fails_on_one_rank},
        {"device_work_does_not_block_herd", test_device_work_does_not_block_herd},
        {"other_kinds_on_the_device", gt_test_other_kinds},
        /* Last: it stops the GPU plane for the rest of the process. */
        {"hung_collective_is_aborted", test_hung_collective_is_aborted},
    };
    static const mt_test_t old_nccl[] = {{"old_nccl_refused", test_old_nccl_refused}};
    if (getenv("HERD_FAKE_NCCL_VERSION") != NULL)
        return gt_main(argc, argv, "gpu_fake_old_nccl", old_nccl, 1);
    return gt_main(argc, argv, "gpu_fake", tests, sizeof tests / sizeof tests[0]);
}
