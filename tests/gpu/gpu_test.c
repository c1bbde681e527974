/* gpu_test.c - see gpu_test.h. */
#include "gpu_test.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <CUnit/Basic.h>

#include "herd.h"

int gt_device = -1;
int gt_ndev = 0;
int gt_nccl = 0;

double gt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void gt_cuda_impl(cudaError_t err, const char *text, const char *file, int line)
{
    if (err == cudaSuccess)
        return;
    fprintf(stderr, "[rank %d] %s:%d: %s failed: %s (%s); the test cannot go on\n", mt_rank,
            file, line, text, cudaGetErrorString(err), cudaGetErrorName(err));
    MPI_Abort(MPI_COMM_WORLD, 1);
}

void *gt_dev_alloc(size_t bytes)
{
    void *p = NULL;
    GT_CUDA(cudaMalloc(&p, bytes < 64 ? 64 : bytes));
    return p;
}

void gt_to_device(void *dst, const void *src, size_t bytes)
{
    if (bytes > 0)
        GT_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void gt_to_host(void *dst, const void *src, size_t bytes)
{
    if (bytes > 0)
        GT_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

/* Why a rank cannot run the suite; the ranks agree on the largest. */
enum { GT_OK = 0, GT_NCCL_SHARES_GPU = 1, GT_NO_DEVICE = 2, GT_BROKEN = 3 };

int gt_probe(const char *what)
{
    MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mt_size);
    MPI_Comm local;
    int local_rank = 0, local_size = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(local, &local_rank);
        MPI_Comm_size(local, &local_size);
        MPI_Comm_free(&local);
    }
#ifdef GT_HAVE_NCCL
    const char *backend = getenv("HERD_GPU_BACKEND");
    gt_nccl = backend == NULL || backend[0] == '\0' || strcasecmp(backend, "nccl") == 0;
#else
    gt_nccl = 0;
#endif
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    char detail[160];
    snprintf(detail, sizeof detail, "cudaGetDeviceCount: %s, %d device(s)",
             err == cudaSuccess ? "ok" : cudaGetErrorName(err), err == cudaSuccess ? n : 0);
    if (err != cudaSuccess) {
        n = 0;
        cudaGetLastError();
    }
    gt_ndev = n;
    int why = GT_OK;
    if (n == 0) {
        why = GT_NO_DEVICE;
    } else if (gt_nccl && local_size > n) {
        why = GT_NCCL_SHARES_GPU;
    } else {
        gt_device = local_rank % n;
        err = cudaSetDevice(gt_device);
        if (err == cudaSuccess)
            err = cudaFree(NULL); /* creates the context now, not inside the first test */
        if (err != cudaSuccess) {
            fprintf(stderr, "[rank %d] %s: CUDA device %d is not usable: %s (%s)\n", mt_rank,
                    what, gt_device, cudaGetErrorString(err), cudaGetErrorName(err));
            why = GT_BROKEN;
        }
    }
    int agreed = why;
    MPI_Allreduce(&why, &agreed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    switch (agreed) {
    case GT_OK:
        return 0;
    case GT_NO_DEVICE:
        if (why == GT_NO_DEVICE)
            printf("[rank %d] %s: no CUDA device: skipped (%s)\n", mt_rank, what, detail);
        else
            printf("[rank %d] %s: another rank has no CUDA device: skipped\n", mt_rank, what);
        fflush(stdout);
        return 77;
    case GT_NCCL_SHARES_GPU:
        if (mt_rank == 0)
            printf("%s: NCCL needs one GPU per rank, and this host has %d rank(s) but %d CUDA "
                   "device(s): skipped (HERD_GPU_BACKEND=mpi lets ranks share a GPU)\n",
                   what, local_size, n);
        fflush(stdout);
        return 77;
    default:
        if (why != GT_BROKEN)
            fprintf(stderr, "[rank %d] %s: another rank's CUDA device is not usable\n", mt_rank,
                    what);
        return 1;
    }
}


int gt_main(int argc, char **argv, const char *suite, const mt_test_t *tests, size_t ntests)
{
    mt_argc = argc - 1;
    mt_argv = argv + 1;
    setvbuf(stderr, NULL, _IONBF, 0);
    if (mt_mpi_init(&argc, &argv) != 0)
        return 1;
    int rc = gt_probe(suite);
    if (rc != 0) {
        MPI_Finalize();
        return rc;
    }
    if (mt_rank == 0)
        printf("gpu suite '%s': %d rank(s), %d visible CUDA device(s), GPU plane over %s\n",
               suite, mt_size, gt_ndev, gt_nccl ? "NCCL" : "MPI (staged through host memory)");
    rc = herd_init();
    if (rc != HERD_OK) {
        fprintf(stderr, "[rank %d] herd_init: %s: %s\n", mt_rank, herd_status_name(rc),
                herd_last_error());
        MPI_Finalize();
        return 1;
    }
    double start = gt_now_ms();
    long local = mt_run_suite(suite, tests, ntests);
    /* A test may have shut herd down and started it again; shut down is idempotent. */
    rc = herd_shutdown();
    if (rc != HERD_OK) {
        fprintf(stderr, "[rank %d] herd_shutdown: %s: %s\n", mt_rank, herd_status_name(rc),
                herd_last_error());
        local++;
    }
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) {
        fprintf(stderr, "[rank %d] a CUDA error is pending at the end: %s (%s)\n", mt_rank,
                cudaGetErrorString(err), cudaGetErrorName(err));
        local++;
    }
    long global = 0;
    long *per_rank = mt_rank == 0 ? calloc((size_t)mt_size, sizeof *per_rank) : NULL;
    MPI_Gather(&local, 1, MPI_LONG, per_rank, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    MPI_Allreduce(&local, &global, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (mt_rank == 0) {
        printf("\ngpu suite '%s' on %d rank(s): %ld failure(s) in all, %.2f s", suite, mt_size,
               global, (gt_now_ms() - start) / 1e3);
        for (int r = 0; r < mt_size && global > 0; r++)
            printf("%s rank %d: %ld", r == 0 ? " (" : ",", r, per_rank[r]);
        printf("%s\n", global > 0 ? ")" : "");
        fflush(stdout);
    }
    free(per_rank);
    MPI_Finalize();
    return global > 0 ? 1 : 0;
}
