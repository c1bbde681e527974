/* gpu_kinds.h - the kinds beyond allreduce and broadcast on device memory (allgather,
 * reduce-scatter with equal and uneven parts and AVERAGE, all-to-all, and the variable-size
 * forms with their device results released by herd_free; scaling refused at submit), exact. One test, shared by the real GPU suite
 * (test_collectives.c) and the fake-CUDA suite (test_fake.c). */
#ifndef HERD_GPU_KINDS_H
#define HERD_GPU_KINDS_H

void gt_test_other_kinds(void);

#endif
