/* test_errors.c - GPU argument errors: memory on the other side of what `device` says, a device
 * that does not exist, misaligned device pointers; ranks that disagree about host vs GPU; and
 * managed memory, which is fine for a GPU op. A refused call creates nothing: the same name is
 * submitted correctly right after, and herd keeps working. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"
#include "herd.h"

enum { N = 1027 };

/* After a refused call, the name must be free and herd working: a correct in-place SUM of
 * device memory under the same name. */
static void check_name_still_usable(const char *name)
{
    float *host = mt_alloc(N * sizeof *host);
    uint64_t salt = mt_mix((uint64_t)strlen(name) * 131);
    mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, salt, host, N);
    float *dev = gt_dev_alloc(N * sizeof *dev);
    gt_to_device(dev, host, N * sizeof *dev);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull(name, dev, dev, N, HERD_FLOAT32, HERD_SUM, gt_device, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
    gt_to_host(host, dev, N * sizeof *dev);
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, salt, host, N, name) == 0);
    GT_CUDA(cudaFree(dev));
    free(host);
}

static void expect_invalid(int rc, const char *what, const char *needle)
{
    if (rc != HERD_ERR_INVALID_ARG)
        fprintf(stderr, "[rank %d] %s: got %s, want HERD_ERR_INVALID_ARG\n", mt_rank, what,
                herd_status_name(rc));
    MT_CHECK_STATUS(rc, HERD_ERR_INVALID_ARG);
    if (needle != NULL) {
        int has = mt_last_error_has(needle);
        if (!has)
            fprintf(stderr, "[rank %d] %s: message '%s' lacks '%s'\n", mt_rank, what,
                    herd_last_error(), needle);
        MT_CHECK(has);
    }
}

/* Device memory passed as host memory (device = HERD_DEVICE_CPU). */
static void test_device_pointer_as_host(void)
{
    float *dev = gt_dev_alloc(N * sizeof *dev);
    float *host = mt_alloc(N * sizeof *host);
    herd_handle_t h = 0;
    expect_invalid(herd_push_pull("gpu.err.d_as_h.inplace", dev, dev, N, HERD_FLOAT32, HERD_SUM,
                                  HERD_DEVICE_CPU, &h),
                   "device memory, in place, device=-1", "gpu.err.d_as_h.inplace");
    expect_invalid(herd_push_pull("gpu.err.d_as_h.send", dev, host, N, HERD_FLOAT32, HERD_SUM,
                                  HERD_DEVICE_CPU, &h),
                   "device sendbuf, host recvbuf, device=-1", "sendbuf");
    expect_invalid(herd_push_pull("gpu.err.d_as_h.recv", host, dev, N, HERD_FLOAT32, HERD_SUM,
                                  HERD_DEVICE_CPU, &h),
                   "host sendbuf, device recvbuf, device=-1", "recvbuf");
    expect_invalid(herd_broadcast("gpu.err.d_as_h.bcast", dev, N, HERD_FLOAT32, 0,
                                  HERD_DEVICE_CPU, &h),
                   "device memory broadcast, device=-1", "gpu.err.d_as_h.bcast");
    check_name_still_usable("gpu.err.d_as_h.inplace");
    check_name_still_usable("gpu.err.d_as_h.bcast");
    GT_CUDA(cudaFree(dev));
    free(host);
}

/* Host memory (pageable and pinned) passed as device memory. */
static void test_host_pointer_as_device(void)
{
    float *dev = gt_dev_alloc(N * sizeof *dev);
    float *host = mt_alloc(N * sizeof *host);
    float *pinned = NULL;
    GT_CUDA(cudaMallocHost((void **)&pinned, N * sizeof *pinned));
    herd_handle_t h = 0;
    expect_invalid(herd_push_pull("gpu.err.h_as_d.inplace", host, host, N, HERD_FLOAT32,
                                  HERD_SUM, gt_device, &h),
                   "pageable host memory, device>=0", "host memory");
    expect_invalid(herd_push_pull("gpu.err.h_as_d.pinned", pinned, pinned, N, HERD_FLOAT32,
                                  HERD_SUM, gt_device, &h),
                   "pinned host memory, device>=0", "host memory");
    expect_invalid(herd_push_pull("gpu.err.h_as_d.recv", dev, host, N, HERD_FLOAT32, HERD_SUM,
                                  gt_device, &h),
                   "device sendbuf, host recvbuf, device>=0", "recvbuf");
    expect_invalid(herd_push_pull("gpu.err.h_as_d.send", host, dev, N, HERD_FLOAT32, HERD_SUM,
                                  gt_device, &h),
                   "host sendbuf, device recvbuf, device>=0", "sendbuf");
    expect_invalid(herd_broadcast("gpu.err.h_as_d.bcast", host, N, HERD_FLOAT32, 0, gt_device,
                                  &h),
                   "host memory broadcast, device>=0", "host memory");
    check_name_still_usable("gpu.err.h_as_d.inplace");
    check_name_still_usable("gpu.err.h_as_d.pinned");
    GT_CUDA(cudaFreeHost(pinned));
    GT_CUDA(cudaFree(dev));
    free(host);
}

/* A device ordinal that does not exist, and one below HERD_DEVICE_CPU. */
static void test_no_such_device(void)
{
    float *dev = gt_dev_alloc(N * sizeof *dev);
    herd_handle_t h = 0;
    int rc = herd_push_pull("gpu.err.nodev", dev, dev, N, HERD_FLOAT32, HERD_SUM, gt_ndev, &h);
    if (rc >= 0)
        fprintf(stderr, "[rank %d] device %d of %d: herd_push_pull returned %s\n", mt_rank,
                gt_ndev, gt_ndev, herd_status_name(rc));
    MT_CHECK(rc < 0);
    MT_CHECK(rc == HERD_ERR_INVALID_ARG || rc == HERD_ERR_NOT_SUPPORTED);
    MT_CHECK(mt_last_error_has("device"));
    rc = herd_broadcast("gpu.err.nodev.bcast", dev, N, HERD_FLOAT32, 0, gt_ndev + 7, &h);
    MT_CHECK(rc == HERD_ERR_INVALID_ARG || rc == HERD_ERR_NOT_SUPPORTED);
    expect_invalid(herd_push_pull("gpu.err.minus2", dev, dev, N, HERD_FLOAT32, HERD_SUM, -2, &h),
                   "device -2", NULL);
    check_name_still_usable("gpu.err.nodev");
    GT_CUDA(cudaFree(dev));
}

/* Memory of another device than the one named (only with two or more devices). */
static void test_other_devices_memory(void)
{
    if (gt_ndev < 2) {
        if (mt_rank == 0)
            printf("  (one CUDA device: nothing to check)\n");
        return;
    }
    int other = (gt_device + 1) % gt_ndev;
    float *dev = NULL;
    GT_CUDA(cudaSetDevice(other));
    GT_CUDA(cudaMalloc((void **)&dev, N * sizeof *dev));
    GT_CUDA(cudaSetDevice(gt_device));
    herd_handle_t h = 0;
    expect_invalid(herd_push_pull("gpu.err.otherdev", dev, dev, N, HERD_FLOAT32, HERD_SUM,
                                  gt_device, &h),
                   "memory of another device", "device");
    GT_CUDA(cudaFree(dev));
}

/* A device pointer not aligned for its dtype. */
static void test_misaligned(void)
{
    char *dev = gt_dev_alloc(N * sizeof(double) + 8);
    herd_handle_t h = 0;
    expect_invalid(herd_push_pull("gpu.err.misaligned", dev + 2, dev + 2, N, HERD_FLOAT32,
                                  HERD_SUM, gt_device, &h),
                   "misaligned float32", "aligned");
    expect_invalid(herd_broadcast("gpu.err.misaligned.bcast", dev + 4, N, HERD_FLOAT64, 0,
                                  gt_device, &h),
                   "misaligned float64", "aligned");
    GT_CUDA(cudaFree(dev));
}

/* NULL with a count is refused on the GPU path as on the host path. */
static void test_null_with_count(void)
{
    herd_handle_t h = 0;
    expect_invalid(herd_push_pull("gpu.err.null", NULL, NULL, N, HERD_FLOAT32, HERD_SUM,
                                  gt_device, &h),
                   "NULL with a count", "NULL");
}

/* Ranks that disagree about host vs GPU memory for one name: HERD_ERR_MISMATCH everywhere. */
static void test_host_gpu_mismatch(void)
{
    if (mt_size < 2) {
        if (mt_rank == 0)
            printf("  (one rank: nothing to disagree with)\n");
        return;
    }
    float *host = mt_alloc(N * sizeof *host);
    float *dev = gt_dev_alloc(N * sizeof *dev);
    int on_gpu = mt_rank == 0;
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("gpu.err.mismatch", on_gpu ? (void *)dev : (void *)host,
                                   on_gpu ? (void *)dev : (void *)host, N, HERD_FLOAT32,
                                   HERD_SUM, on_gpu ? gt_device : HERD_DEVICE_CPU, &h),
                    HERD_OK);
    int rc = herd_wait_handle(h, -1);
    if (rc != HERD_ERR_MISMATCH)
        fprintf(stderr, "[rank %d] host/GPU disagreement: got %s: %s\n", mt_rank,
                herd_status_name(rc), herd_last_error());
    MT_CHECK_STATUS(rc, HERD_ERR_MISMATCH);
    GT_CUDA(cudaFree(dev));
    free(host);
    check_name_still_usable("gpu.err.after.mismatch");
}

/* Managed memory is device-accessible: a GPU op on it is fine and exact. */
static void test_managed_memory(void)
{
    int managed = 0;
    GT_CUDA(cudaDeviceGetAttribute(&managed, cudaDevAttrManagedMemory, gt_device));
    int all = 0;
    MPI_Allreduce(&managed, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all) {
        if (mt_rank == 0)
            printf("  (no managed memory on some rank's device: nothing to check)\n");
        return;
    }
    float *m = NULL;
    GT_CUDA(cudaMallocManaged((void **)&m, N * sizeof *m, cudaMemAttachGlobal));
    mt_fill(HERD_FLOAT32, HERD_MAX, mt_rank, 4711, m, N);
    GT_CUDA(cudaDeviceSynchronize());
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("gpu.managed", m, m, N, HERD_FLOAT32, HERD_MAX, gt_device,
                                   &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "gpu.managed"), HERD_OK);
    GT_CUDA(cudaDeviceSynchronize());
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_MAX, mt_size, 4711, m, N, "gpu.managed") ==
             0);
    GT_CUDA(cudaFree(m));
}

/* herd_handle_stream_wait on handles that are not there. */
static void test_stream_wait_bad_handles(void)
{
    cudaStream_t s;
    GT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    MT_CHECK_STATUS(herd_handle_stream_wait(0, (void *)s), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_handle_stream_wait(INT64_C(0x7fff00000001), (void *)s),
                    HERD_ERR_NOT_FOUND);
    GT_CUDA(cudaStreamDestroy(s));
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"device_pointer_as_host", test_device_pointer_as_host},
        {"host_pointer_as_device", test_host_pointer_as_device},
        {"no_such_device", test_no_such_device},
        {"other_devices_memory", test_other_devices_memory},
        {"misaligned", test_misaligned},
        {"null_with_count", test_null_with_count},
        {"host_gpu_mismatch", test_host_gpu_mismatch},
        {"managed_memory", test_managed_memory},
        {"stream_wait_bad_handles", test_stream_wait_bad_handles},
    };
    return gt_main(argc, argv, "gpu_errors", tests, sizeof tests / sizeof tests[0]);
}
