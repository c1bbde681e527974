/* gpu_test.h - the runner of the GPU suites, on top of the MPI harness (tests/mpi/mpi_test.h).
 *
 * gt_main() brings MPI up (MPI_THREAD_MULTIPLE), then every rank asks CUDA how many devices it
 * sees and the ranks agree with MPI_Allreduce: where any rank has no device, or NCCL would need
 * more devices than this host has (NCCL refuses two ranks on one GPU), every rank says why and
 * exits 77, ctest's "skipped". Otherwise each rank takes device (local rank % devices), starts
 * herd, runs the CUnit suite (rank 0 prints the report), sums the failures of every rank so
 * every rank exits alike, and shuts down.
 *
 * Buffers are cudaMalloc'd; values are mt_fill()'s exact ones (fp16/bf16 encoded on the host),
 * copied to the device and back for checking with mt_verify_allreduce/mt_verify_broadcast.
 */
#ifndef HERD_GPU_TEST_H
#define HERD_GPU_TEST_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "mpi_test.h"

/* The CUDA ordinal this rank uses, the number of visible devices, and whether herd's GPU plane
 * runs over NCCL here (a build with NCCL and HERD_GPU_BACKEND unset or "nccl"). */
extern int gt_device;
extern int gt_ndev;
extern int gt_nccl;

/* After MPI_Init: probes the devices and agrees across ranks. Returns 0 when every rank has a
 * device it can use (gt_device is then current on this thread), 77 when the suite must be
 * skipped (every rank has printed why). `what` names the program in the message. */
int gt_probe(const char *what);

/* Runs the suite; returns the process exit status (0, 1, or 77 when skipped). */
int gt_main(int argc, char **argv, const char *suite, const mt_test_t *tests, size_t ntests);

/* A CUDA call in the test's own scaffolding that fails ends the job: the test cannot go on. */
void gt_cuda_impl(cudaError_t err, const char *text, const char *file, int line);
#define GT_CUDA(call) gt_cuda_impl((call), #call, __FILE__, __LINE__)

/* cudaMalloc of at least 64 bytes; free with cudaFree. */
void *gt_dev_alloc(size_t bytes);
/* Synchronous copies (cudaMemcpy). */
void gt_to_device(void *dst, const void *src, size_t bytes);
void gt_to_host(void *dst, const void *src, size_t bytes);

/* Milliseconds on a monotonic clock. */
double gt_now_ms(void);

#endif /* HERD_GPU_TEST_H */
