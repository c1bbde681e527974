/* test_streams.c - stream ordering, the point of herd's GPU API: the caller submits right after
 * enqueueing the work that writes a tensor, never synchronizing, and herd must read the data
 * only once that work is done (an event on the producer's stream, herd_set_cuda_stream). A
 * consumer stream made to wait with herd_handle_stream_wait must see the result.
 *
 * Every producer here is deliberately slow: a host function that sleeps PRODUCER_DELAY_MS on the
 * stream, then big copies (pinned host -> device staging buffer -> tensor). Each test checks
 * that the producer stream is still busy when herd_push_pull returns, so it proves the submit
 * really came before the data.
 *
 * The ordering tests reduce out of place into a buffer of other garbage: with one rank an
 * in-place SUM is the identity, so a read that came too early would be overwritten by the
 * producer's own late writes and go unseen. Results are read back on a non-blocking stream
 * after herd_wait_handle: a legacy cudaMemcpy would wait for every blocking stream, the
 * producer's included, and hide a result herd completed too early. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_test.h"
#include "herd.h"

enum { PRODUCER_DELAY_MS = 300, BIG = 1 << 21 /* float32 elements: 8 MiB */ };

static void CUDART_CB sleep_on_stream(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_sec = PRODUCER_DELAY_MS / 1000,
                          .tv_nsec = (PRODUCER_DELAY_MS % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A tensor written on `stream` by a slow chain: sleep, memset to garbage, H2D of `n` float32
 * from pinned memory into a staging buffer, D2D into the tensor. */
typedef struct produced {
    int64_t n;
    uint64_t salt;
    float *pinned;  /* the values, pinned host memory */
    float *staging; /* device */
    float *tensor;  /* device: what herd reduces */
} produced_t;

static void produce_init(produced_t *p, int64_t n, uint64_t salt)
{
    p->n = n;
    p->salt = salt;
    size_t bytes = (size_t)n * sizeof(float);
    GT_CUDA(cudaMallocHost((void **)&p->pinned, bytes));
    mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, salt, p->pinned, n);
    p->staging = gt_dev_alloc(bytes);
    p->tensor = gt_dev_alloc(bytes);
    GT_CUDA(cudaMemset(p->tensor, 0x7f, bytes)); /* a stale value, if herd reads too early */
    GT_CUDA(cudaDeviceSynchronize());
}

/* Enqueues the chain on `stream`; `delay` adds the sleeping host function first. */
static void produce_enqueue(produced_t *p, cudaStream_t stream, int delay)
{
    size_t bytes = (size_t)p->n * sizeof(float);
    if (delay)
        GT_CUDA(cudaLaunchHostFunc(stream, sleep_on_stream, NULL));
    GT_CUDA(cudaMemsetAsync(p->tensor, 0xff, bytes, stream));
    GT_CUDA(cudaMemcpyAsync(p->staging, p->pinned, bytes, cudaMemcpyHostToDevice, stream));
    GT_CUDA(cudaMemcpyAsync(p->tensor, p->staging, bytes, cudaMemcpyDeviceToDevice, stream));
}

static void produce_free(produced_t *p)
{
    GT_CUDA(cudaFreeHost(p->pinned));
    GT_CUDA(cudaFree(p->staging));
    GT_CUDA(cudaFree(p->tensor));
}

/* Checks a device buffer of n float32 against the exact sum over the ranks, read on a
 * non-blocking stream of its own (no implicit wait for the producer's streams). */
static void check_sum(const float *dev, int64_t n, uint64_t salt, const char *what)
{
    float *got = mt_alloc((size_t)n * sizeof *got);
    cudaStream_t reader;
    GT_CUDA(cudaStreamCreateWithFlags(&reader, cudaStreamNonBlocking));
    GT_CUDA(cudaMemcpyAsync(got, dev, (size_t)n * sizeof *got, cudaMemcpyDeviceToHost, reader));
    GT_CUDA(cudaStreamSynchronize(reader));
    GT_CUDA(cudaStreamDestroy(reader));
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, salt, got, n, what) == 0);
    free(got);
}

/* An output buffer for an out-of-place reduction of p, holding garbage unlike both the stale
 * and the produced values. */
static float *out_for(const produced_t *p)
{
    float *out = gt_dev_alloc((size_t)p->n * sizeof(float));
    GT_CUDA(cudaMemset(out, 0x5a, (size_t)p->n * sizeof(float)));
    GT_CUDA(cudaDeviceSynchronize());
    return out;
}

/* 1 while `stream` still has work queued (the submit came before the data). */
static int still_busy(cudaStream_t stream)
{
    cudaError_t err = cudaStreamQuery(stream);
    if (err != cudaSuccess && err != cudaErrorNotReady)
        GT_CUDA(err);
    return err == cudaErrorNotReady;
}

/* Submits an in-place float32 SUM of p->tensor with the calling thread's producer stream set to
 * `stream`; checks that the submit returned at once, while the producer was still busy. */
static herd_handle_t submit_produced(produced_t *p, const char *name, cudaStream_t stream,
                                     void *out)
{
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_set_cuda_stream((void *)stream), HERD_OK);
    double t0 = gt_now_ms();
    MT_CHECK_STATUS(herd_push_pull(name, p->tensor, out != NULL ? out : p->tensor, p->n,
                                   HERD_FLOAT32, HERD_SUM, gt_device, &h),
                    HERD_OK);
    double took = gt_now_ms() - t0;
    int busy = still_busy(stream);
    if (!busy || took > PRODUCER_DELAY_MS / 2)
        fprintf(stderr, "[rank %d] %s: submit took %.1f ms, producer busy after it: %d\n",
                mt_rank, name, took, busy);
    MT_CHECK(busy);                         /* the test really raced the producer */
    MT_CHECK(took < PRODUCER_DELAY_MS / 2); /* and herd did not wait for it at submit */
    MT_CHECK_STATUS(herd_set_cuda_stream(NULL), HERD_OK);
    return h;
}

/* A user stream (cudaStreamCreate), in place: blind with one rank (see the top), kept for the
 * in-place path with several. */
static void test_user_stream_in_place(void)
{
    cudaStream_t s;
    GT_CUDA(cudaStreamCreate(&s));
    produced_t p;
    produce_init(&p, BIG, mt_mix(101));
    produce_enqueue(&p, s, 1);
    herd_handle_t h = submit_produced(&p, "gpu.stream.user.inplace", s, NULL);
    MT_CHECK_STATUS(mt_wait(h, "gpu.stream.user.inplace"), HERD_OK);
    check_sum(p.tensor, p.n, p.salt, "gpu.stream.user.inplace");
    GT_CUDA(cudaStreamSynchronize(s));
    GT_CUDA(cudaStreamDestroy(s));
    produce_free(&p);
}

/* A non-blocking user stream, out of place: the input must come back unchanged. */
static void test_user_stream_out_of_place(void)
{
    cudaStream_t s;
    GT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    produced_t p;
    produce_init(&p, BIG, mt_mix(102));
    float *out = gt_dev_alloc((size_t)p.n * sizeof(float));
    GT_CUDA(cudaMemset(out, 0x5a, (size_t)p.n * sizeof(float)));
    GT_CUDA(cudaDeviceSynchronize());
    produce_enqueue(&p, s, 1);
    herd_handle_t h = submit_produced(&p, "gpu.stream.user.outofplace", s, out);
    MT_CHECK_STATUS(mt_wait(h, "gpu.stream.user.outofplace"), HERD_OK);
    check_sum(out, p.n, p.salt, "gpu.stream.user.outofplace");
    float *in = mt_alloc((size_t)p.n * sizeof *in);
    gt_to_host(in, p.tensor, (size_t)p.n * sizeof *in);
    MT_CHECK(memcmp(in, p.pinned, (size_t)p.n * sizeof *in) == 0);
    free(in);
    GT_CUDA(cudaStreamDestroy(s));
    GT_CUDA(cudaFree(out));
    produce_free(&p);
}

/* Many small tensors and one big one, all written by one slow stream and submitted at once:
 * the small ones travel fused, and the fused group must wait for every producer event. */
static void test_fused_group_after_producer(void)
{
    enum { K = 24 };
    cudaStream_t s;
    GT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    produced_t p[K + 1];
    for (int i = 0; i < K; i++)
        produce_init(&p[i], 1027 + i, mt_mix((uint64_t)(200 + i)));
    produce_init(&p[K], BIG, mt_mix(299));
    float *out[K + 1];
    for (int i = 0; i <= K; i++)
        out[i] = out_for(&p[i]); /* before the producer starts: out_for synchronizes the device */
    GT_CUDA(cudaLaunchHostFunc(s, sleep_on_stream, NULL));
    for (int i = K; i >= 0; i--) /* the big one first: the small ones are written last */
        produce_enqueue(&p[i], s, 0);
    herd_handle_t h[K + 1];
    char name[64];
    for (int i = 0; i <= K; i++) {
        snprintf(name, sizeof name, "gpu.stream.fused.%d", i);
        h[i] = submit_produced(&p[i], name, s, out[i]);
    }
    for (int i = K; i >= 0; i--) {
        snprintf(name, sizeof name, "gpu.stream.fused.%d", i);
        MT_CHECK_STATUS(mt_wait(h[i], name), HERD_OK);
        check_sum(out[i], p[i].n, p[i].salt, name);
    }
    GT_CUDA(cudaStreamSynchronize(s));
    GT_CUDA(cudaStreamDestroy(s));
    for (int i = 0; i <= K; i++) {
        GT_CUDA(cudaFree(out[i]));
        produce_free(&p[i]);
    }
}

/* The legacy default stream (NULL): herd's own stream does not synchronize with it implicitly,
 * so only the event orders the read. Out of place. */
static void test_legacy_default_stream(void)
{
    produced_t p;
    produce_init(&p, BIG, mt_mix(103));
    float *out = out_for(&p);
    produce_enqueue(&p, (cudaStream_t)0, 1);
    herd_handle_t h = submit_produced(&p, "gpu.stream.legacy", (cudaStream_t)0, out);
    MT_CHECK_STATUS(mt_wait(h, "gpu.stream.legacy"), HERD_OK);
    check_sum(out, p.n, p.salt, "gpu.stream.legacy");
    GT_CUDA(cudaDeviceSynchronize());
    GT_CUDA(cudaFree(out));
    produce_free(&p);
}

/* The calling thread's per-thread default stream. Out of place. */
static void test_per_thread_default_stream(void)
{
    produced_t p;
    produce_init(&p, BIG, mt_mix(104));
    float *out = out_for(&p);
    produce_enqueue(&p, cudaStreamPerThread, 1);
    herd_handle_t h = submit_produced(&p, "gpu.stream.perthread", cudaStreamPerThread, out);
    MT_CHECK_STATUS(mt_wait(h, "gpu.stream.perthread"), HERD_OK);
    check_sum(out, p.n, p.salt, "gpu.stream.perthread");
    GT_CUDA(cudaDeviceSynchronize());
    GT_CUDA(cudaFree(out));
    produce_free(&p);
}

/* A blocking user stream (cudaStreamCreate), out of place. */
static void test_user_stream_blocking_out_of_place(void)
{
    cudaStream_t s;
    GT_CUDA(cudaStreamCreate(&s));
    produced_t p;
    produce_init(&p, BIG, mt_mix(109));
    float *out = out_for(&p);
    produce_enqueue(&p, s, 1);
    herd_handle_t h = submit_produced(&p, "gpu.stream.user.blocking.oop", s, out);
    MT_CHECK_STATUS(mt_wait(h, "gpu.stream.user.blocking.oop"), HERD_OK);
    check_sum(out, p.n, p.salt, "gpu.stream.user.blocking.oop");
    GT_CUDA(cudaStreamSynchronize(s));
    GT_CUDA(cudaStreamDestroy(s));
    GT_CUDA(cudaFree(out));
    produce_free(&p);
}

/* herd_handle_stream_wait: a consumer stream that copies the result to the host right after
 * the wait is enqueued, before the host has waited on the handle, must see the result. */
static void run_consumer(int64_t n, uint64_t salt, const char *name)
{
    cudaStream_t s, consumer;
    GT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    GT_CUDA(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking));
    produced_t p;
    produce_init(&p, n, salt);
    float *seen = NULL;
    GT_CUDA(cudaMallocHost((void **)&seen, (size_t)n * sizeof *seen));
    memset(seen, 0, (size_t)n * sizeof *seen);
    produce_enqueue(&p, s, 1);
    herd_handle_t h = submit_produced(&p, name, s, NULL);
    MT_CHECK_STATUS(herd_handle_stream_wait(h, (void *)consumer), HERD_OK);
    GT_CUDA(cudaMemcpyAsync(seen, p.tensor, (size_t)n * sizeof *seen, cudaMemcpyDeviceToHost,
                            consumer));
    GT_CUDA(cudaStreamSynchronize(consumer));
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, salt, seen, n, name) == 0);
    /* The stream wait does not release the handle. */
    MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
    MT_CHECK_STATUS(herd_handle_stream_wait(h, (void *)consumer), HERD_ERR_NOT_FOUND);
    GT_CUDA(cudaFreeHost(seen));
    GT_CUDA(cudaStreamDestroy(consumer));
    GT_CUDA(cudaStreamDestroy(s));
    produce_free(&p);
}

static void test_consumer_stream_wait(void)
{
    run_consumer(BIG, mt_mix(105), "gpu.stream.consumer.big");
    run_consumer(1027, mt_mix(106), "gpu.stream.consumer.small");
}

/* A consumer that waits on several handles of one fused group. */
static void test_consumer_stream_wait_fused(void)
{
    enum { K = 8 };
    cudaStream_t s, consumer;
    GT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    GT_CUDA(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking));
    produced_t p[K];
    float *seen[K];
    herd_handle_t h[K];
    char name[64];
    for (int i = 0; i < K; i++) {
        produce_init(&p[i], 513 + 7 * i, mt_mix((uint64_t)(400 + i)));
        GT_CUDA(cudaMallocHost((void **)&seen[i], (size_t)p[i].n * sizeof(float)));
    }
    GT_CUDA(cudaLaunchHostFunc(s, sleep_on_stream, NULL));
    for (int i = 0; i < K; i++)
        produce_enqueue(&p[i], s, 0);
    for (int i = 0; i < K; i++) {
        snprintf(name, sizeof name, "gpu.stream.consumer.fused.%d", i);
        h[i] = submit_produced(&p[i], name, s, NULL);
    }
    for (int i = K - 1; i >= 0; i--) {
        MT_CHECK_STATUS(herd_handle_stream_wait(h[i], (void *)consumer), HERD_OK);
        GT_CUDA(cudaMemcpyAsync(seen[i], p[i].tensor, (size_t)p[i].n * sizeof(float),
                                cudaMemcpyDeviceToHost, consumer));
    }
    GT_CUDA(cudaStreamSynchronize(consumer));
    for (int i = 0; i < K; i++) {
        snprintf(name, sizeof name, "gpu.stream.consumer.fused.%d", i);
        MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, p[i].salt, seen[i],
                                     p[i].n, name) == 0);
        MT_CHECK_STATUS(mt_wait(h[i], name), HERD_OK);
        GT_CUDA(cudaFreeHost(seen[i]));
        produce_free(&p[i]);
    }
    GT_CUDA(cudaStreamDestroy(consumer));
    GT_CUDA(cudaStreamDestroy(s));
}

/* The producer stream is per thread. The main thread sets stream s1 (its producer sleeps twice
 * as long), then a worker thread sets its own s2 and submits; the main thread then submits
 * without setting the stream again. Were the setting shared, the main thread's op would be
 * ordered after s2 only, and read its tensor while s1 is still writing it. */
typedef struct worker_arg {
    produced_t *p;
    cudaStream_t s;
    herd_handle_t h;
    int rc;
} worker_arg_t;

static void *worker(void *arg)
{
    worker_arg_t *w = arg;
    cudaError_t err = cudaSetDevice(gt_device);
    MT_TCHECK(err == cudaSuccess);
    if (err != cudaSuccess)
        return NULL;
    w->rc = herd_set_cuda_stream((void *)w->s);
    if (w->rc == HERD_OK)
        w->rc = herd_push_pull("gpu.stream.thread.worker", w->p->tensor, w->p->tensor, w->p->n,
                               HERD_FLOAT32, HERD_SUM, gt_device, &w->h);
    herd_set_cuda_stream(NULL);
    return NULL;
}

static void test_stream_is_per_thread(void)
{
    cudaStream_t s1, s2;
    GT_CUDA(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    GT_CUDA(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    produced_t p1, p2;
    produce_init(&p1, BIG, mt_mix(107));
    produce_init(&p2, BIG, mt_mix(108));
    float *out1 = out_for(&p1); /* before the producers start: out_for synchronizes the device */
    GT_CUDA(cudaLaunchHostFunc(s1, sleep_on_stream, NULL));
    produce_enqueue(&p1, s1, 1);
    produce_enqueue(&p2, s2, 1);
    MT_CHECK_STATUS(herd_set_cuda_stream((void *)s1), HERD_OK);
    worker_arg_t w = {.p = &p2, .s = s2, .h = 0, .rc = HERD_ERR_INTERNAL};
    pthread_t t;
    int started = pthread_create(&t, NULL, worker, &w) == 0;
    MT_CHECK(started);
    if (started)
        pthread_join(t, NULL);
    MT_CHECK_STATUS(w.rc, HERD_OK);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("gpu.stream.thread.main", p1.tensor, out1, p1.n,
                                   HERD_FLOAT32, HERD_SUM, gt_device, &h),
                    HERD_OK);
    MT_CHECK(still_busy(s1));
    MT_CHECK_STATUS(herd_set_cuda_stream(NULL), HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "gpu.stream.thread.main"), HERD_OK);
    check_sum(out1, p1.n, p1.salt, "gpu.stream.thread.main");
    if (w.rc == HERD_OK) {
        MT_CHECK_STATUS(mt_wait(w.h, "gpu.stream.thread.worker"), HERD_OK);
        check_sum(p2.tensor, p2.n, p2.salt, "gpu.stream.thread.worker");
    }
    MT_CHECK(mt_thread_failures() == 0);
    GT_CUDA(cudaStreamSynchronize(s1));
    GT_CUDA(cudaStreamSynchronize(s2));
    GT_CUDA(cudaStreamDestroy(s1));
    GT_CUDA(cudaStreamDestroy(s2));
    GT_CUDA(cudaFree(out1));
    produce_free(&p1);
    produce_free(&p2);
}

/* herd_handle_stream_wait on a host operation is HERD_ERR_INVALID_ARG, also in a handle slot
 * that a GPU operation used before (handle slots are reused last-in first-out). */
static void test_stream_wait_on_host_op(void)
{
    enum { K = 8, N = 1027 };
    cudaStream_t consumer;
    GT_CUDA(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking));
    char name[64];
    for (int round = 0; round < 2; round++) {
        /* round 0: slots earlier tests' GPU ops may have used; round 1: the slots the GPU ops
         * below just released */
        float *host[K];
        herd_handle_t h[K];
        for (int i = 0; i < K; i++) {
            host[i] = mt_alloc(N * sizeof(float));
            mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, (uint64_t)(500 + i), host[i], N);
            snprintf(name, sizeof name, "gpu.stream.hostop.%d.%d", round, i);
            MT_CHECK_STATUS(herd_push_pull(name, host[i], host[i], N, HERD_FLOAT32, HERD_SUM,
                                           HERD_DEVICE_CPU, &h[i]),
                            HERD_OK);
            int rc = herd_handle_stream_wait(h[i], (void *)consumer);
            if (rc != HERD_ERR_INVALID_ARG)
                fprintf(stderr, "[rank %d] %s (round %d): herd_handle_stream_wait on a host op "
                        "returned %s\n", mt_rank, name, round, herd_status_name(rc));
            MT_CHECK_STATUS(rc, HERD_ERR_INVALID_ARG);
        }
        for (int i = 0; i < K; i++) {
            snprintf(name, sizeof name, "gpu.stream.hostop.%d.%d", round, i);
            MT_CHECK_STATUS(mt_wait(h[i], name), HERD_OK);
            MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, (uint64_t)(500 + i),
                                         host[i], N, name) == 0);
            free(host[i]);
        }
        if (round == 1)
            break;
        /* GPU ops in (at least) the same K slots, waited and released. */
        produced_t p[K];
        for (int i = 0; i < K; i++) {
            produce_init(&p[i], N, mt_mix((uint64_t)(600 + i)));
            produce_enqueue(&p[i], (cudaStream_t)0, 0);
        }
        GT_CUDA(cudaStreamSynchronize((cudaStream_t)0));
        for (int i = 0; i < K; i++) {
            snprintf(name, sizeof name, "gpu.stream.gpuop.%d", i);
            MT_CHECK_STATUS(herd_push_pull(name, p[i].tensor, p[i].tensor, N, HERD_FLOAT32,
                                           HERD_SUM, gt_device, &h[i]),
                            HERD_OK);
        }
        for (int i = 0; i < K; i++) {
            snprintf(name, sizeof name, "gpu.stream.gpuop.%d", i);
            MT_CHECK_STATUS(herd_handle_stream_wait(h[i], (void *)consumer), HERD_OK);
            MT_CHECK_STATUS(mt_wait(h[i], name), HERD_OK);
            produce_free(&p[i]);
        }
    }
    GT_CUDA(cudaStreamSynchronize(consumer));
    GT_CUDA(cudaStreamDestroy(consumer));
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"user_stream_in_place", test_user_stream_in_place},
        {"user_stream_out_of_place", test_user_stream_out_of_place},
        {"user_stream_blocking_out_of_place", test_user_stream_blocking_out_of_place},
        {"fused_group_after_producer", test_fused_group_after_producer},
        {"legacy_default_stream", test_legacy_default_stream},
        {"per_thread_default_stream", test_per_thread_default_stream},
        {"consumer_stream_wait", test_consumer_stream_wait},
        {"consumer_stream_wait_fused", test_consumer_stream_wait_fused},
        {"stream_is_per_thread", test_stream_is_per_thread},
        {"stream_wait_on_host_op", test_stream_wait_on_host_op},
    };
    return gt_main(argc, argv, "gpu_streams", tests, sizeof tests / sizeof tests[0]);
}
