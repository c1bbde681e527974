/* gpu_kinds.c - see gpu_kinds.h. */
#include "gpu_kinds.h"

#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "gpu_test.h"
#include "herd.h"
#include "mpi_test.h"

enum { N = 1027, BIGS = 20000 /* past the 64 KiB fusion threshold */ };

/* Allgather, reduce-scatter (equal parts, AVERAGE, rows that do not divide) and all-to-all of
 * device memory, exact, through NCCL or the staging plane (the ctest entry chooses). */
void gt_test_other_kinds(void)
{
    size_t fs = sizeof(float);
    uint64_t salt = mt_mix(77);
    /* allgather: every rank's N values, in rank order */
    float *host = mt_alloc((size_t)N * (size_t)mt_size * fs);
    mt_fill(HERD_FLOAT32, MT_BCAST, mt_rank, salt, host, N);
    float *send = gt_dev_alloc((size_t)N * fs), *recv = gt_dev_alloc((size_t)N * mt_size * fs);
    gt_to_device(send, host, (size_t)N * fs);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_allgather("fake.ag", send, recv, N, HERD_FLOAT32, gt_device, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "fake.ag"), HERD_OK);
    gt_to_host(host, recv, (size_t)N * mt_size * fs);
    int bad = 0;
    for (int r = 0; r < mt_size; r++)
        for (int64_t i = 0; i < N; i++)
            bad += host[r * N + i] != (float)mt_value(HERD_FLOAT32, MT_BCAST, r, i, salt);
    MT_CHECK(bad == 0);
    GT_CUDA(cudaFree(send));
    GT_CUDA(cudaFree(recv));
    free(host);

    /* reduce-scatter: SUM and AVERAGE of N per rank, then rows that do not divide (over NCCL
     * the whole tensor is reduced in the fusion buffer: the last, 120 KB, grows it past a small
     * fusion threshold) */
    const struct {
        int op;
        int64_t rows, row;
    } rs[] = {{HERD_SUM, N * 2, 1},
              {HERD_AVERAGE, N * 2, 1},
              {HERD_MAX, 2 * 7 + 1, 3},
              {HERD_SUM, 6001, 5}};
    for (size_t k = 0; k < sizeof rs / sizeof rs[0]; k++) {
        int64_t count = rs[k].rows * rs[k].row;
        int64_t mine = herd_reducescatter_rows(rs[k].rows, mt_size, mt_rank) * rs[k].row;
        int64_t first = 0;
        for (int r = 0; r < mt_rank; r++)
            first += herd_reducescatter_rows(rs[k].rows, mt_size, r) * rs[k].row;
        uint64_t s2 = mt_mix(80 + k);
        host = mt_alloc((size_t)count * fs);
        mt_fill(HERD_FLOAT32, rs[k].op, mt_rank, s2, host, count);
        send = gt_dev_alloc((size_t)count * fs);
        recv = gt_dev_alloc((size_t)(mine > 0 ? mine : 1) * fs);
        gt_to_device(send, host, (size_t)count * fs);
        char name[32];
        snprintf(name, sizeof name, "fake.rs.%zu", k);
        MT_CHECK_STATUS(herd_reducescatterv(name, send, recv, rs[k].rows, rs[k].row,
                                            HERD_FLOAT32, rs[k].op, gt_device, &h),
                        HERD_OK);
        MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
        float *got = mt_alloc((size_t)(mine > 0 ? mine : 1) * fs);
        gt_to_host(got, recv, (size_t)mine * fs);
        int64_t wrong = 0; /* element i is the reduction of element first + i */
        for (int64_t i = 0; i < mine; i++) {
            double acc = 0;
            for (int r = 0; r < mt_size; r++) {
                double v = (double)mt_value(HERD_FLOAT32, rs[k].op, r, first + i, s2);
                acc = r == 0 ? v : rs[k].op == HERD_MAX ? (v > acc ? v : acc) : acc + v;
            }
            if (rs[k].op == HERD_AVERAGE)
                acc /= mt_size;
            wrong += (double)got[i] != acc;
        }
        MT_CHECK(wrong == 0);
        GT_CUDA(cudaFree(send));
        GT_CUDA(cudaFree(recv));
        free(host);
        free(got);
    }

    /* all-to-all: block d of rank s holds s * 1000 + d * 10 + i */
    enum { PER = 5 };
    int32_t *ih = mt_alloc((size_t)PER * mt_size * sizeof *ih);
    for (int d = 0; d < mt_size; d++)
        for (int i = 0; i < PER; i++)
            ih[d * PER + i] = mt_rank * 1000 + d * 10 + i;
    int32_t *isend = gt_dev_alloc((size_t)PER * mt_size * sizeof *isend);
    int32_t *irecv = gt_dev_alloc((size_t)PER * mt_size * sizeof *irecv);
    gt_to_device(isend, ih, (size_t)PER * mt_size * sizeof *ih);
    MT_CHECK_STATUS(herd_alltoall("fake.a2a", isend, irecv, PER, HERD_INT32, gt_device, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "fake.a2a"), HERD_OK);
    gt_to_host(ih, irecv, (size_t)PER * mt_size * sizeof *ih);
    bad = 0;
    for (int s = 0; s < mt_size; s++)
        for (int i = 0; i < PER; i++)
            bad += ih[s * PER + i] != s * 1000 + mt_rank * 10 + i;
    MT_CHECK(bad == 0);
    GT_CUDA(cudaFree(isend));
    GT_CUDA(cudaFree(irecv));
    free(ih);
    /* allgatherv: rank r sends r + 1 rows of 3; herd allocates the result on the device. */
    const int64_t row = 3;
    int64_t my = (mt_rank + 1) * row;
    float *fh = mt_alloc((size_t)my * fs);
    mt_fill(HERD_FLOAT32, MT_BCAST, mt_rank, salt ^ 5, fh, my);
    float *fd = gt_dev_alloc((size_t)my * fs);
    gt_to_device(fd, fh, (size_t)my * fs);
    void *out = NULL;
    int64_t counts[64];
    MT_CHECK_STATUS(herd_allgatherv("fake.agv", fd, my, row, HERD_FLOAT32, gt_device, &out,
                                    counts, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "fake.agv"), HERD_OK);
    int64_t total = 0;
    for (int r = 0; r < mt_size; r++) {
        MT_CHECK(counts[r] == (r + 1) * row);
        total += counts[r];
    }
    float *gh = mt_alloc((size_t)total * fs);
    gt_to_host(gh, out, (size_t)total * fs);
    bad = 0;
    for (int r = 0, off = 0; r < mt_size; off += (int)counts[r], r++)
        for (int64_t i = 0; i < counts[r]; i++)
            bad += gh[off + i] != (float)mt_value(HERD_FLOAT32, MT_BCAST, r, i, salt ^ 5);
    MT_CHECK(bad == 0);
    MT_CHECK_STATUS(herd_free(out, gt_device), HERD_OK);
    GT_CUDA(cudaFree(fd));
    free(fh);
    free(gh);

    /* alltoallv: rank s sends (s + d) % 3 + 1 ints to rank d, valued s * 1000 + d * 10 + i. */
    int64_t sendcounts[64], recvcounts[64], sent = 0;
    for (int d = 0; d < mt_size; d++)
        sent += sendcounts[d] = (mt_rank + d) % 3 + 1;
    ih = mt_alloc((size_t)sent * sizeof *ih);
    for (int d = 0, off = 0; d < mt_size; off += (int)sendcounts[d], d++)
        for (int64_t i = 0; i < sendcounts[d]; i++)
            ih[off + i] = mt_rank * 1000 + d * 10 + (int)i;
    isend = gt_dev_alloc((size_t)sent * sizeof *isend);
    gt_to_device(isend, ih, (size_t)sent * sizeof *ih);
    out = NULL;
    MT_CHECK_STATUS(herd_alltoallv("fake.a2av", isend, sendcounts, 1, HERD_INT32, gt_device,
                                   &out, recvcounts, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "fake.a2av"), HERD_OK);
    int64_t got = 0;
    for (int s2 = 0; s2 < mt_size; s2++) {
        MT_CHECK(recvcounts[s2] == (s2 + mt_rank) % 3 + 1);
        got += recvcounts[s2];
    }
    int32_t *rh = mt_alloc((size_t)got * sizeof *rh);
    gt_to_host(rh, out, (size_t)got * sizeof *rh);
    bad = 0;
    for (int s2 = 0, off = 0; s2 < mt_size; off += (int)recvcounts[s2], s2++)
        for (int64_t i = 0; i < recvcounts[s2]; i++)
            bad += rh[off + i] != s2 * 1000 + mt_rank * 10 + (int)i;
    MT_CHECK(bad == 0);
    MT_CHECK_STATUS(herd_free(out, gt_device), HERD_OK);
    GT_CUDA(cudaFree(isend));
    free(ih);
    free(rh);

    /* Scaling on the device: NCCL's PreMulSum (or the host path, staged). A fused group whose
     * members scale differently, a tensor alone, SUM and AVERAGE, exact (powers of two). */
    enum { NS = 4 };
    const int64_t sizes[NS] = {17, 33, 5, BIGS};
    const double pre[NS] = {2.0, 1.0, 0.5, 4.0}, post[NS] = {1.0, 0.25, 1.0, 0.5};
    herd_handle_t hs[NS];
    float *sd[NS], *sh[NS];
    for (int k = 0; k < NS; k++) {
        sh[k] = mt_alloc((size_t)sizes[k] * fs);
        mt_fill(HERD_FLOAT32, k == 1 ? HERD_AVERAGE : HERD_SUM, mt_rank, salt + 100 + k, sh[k],
                sizes[k]);
        sd[k] = gt_dev_alloc((size_t)sizes[k] * fs);
        gt_to_device(sd[k], sh[k], (size_t)sizes[k] * fs);
        char name[32];
        snprintf(name, sizeof name, "fake.scaled.%d", k);
        MT_CHECK_STATUS(herd_push_pull_scaled(name, sd[k], sd[k], sizes[k], HERD_FLOAT32,
                                              k == 1 ? HERD_AVERAGE : HERD_SUM, pre[k], post[k],
                                              gt_device, &hs[k]),
                        HERD_OK);
    }
    for (int k = 0; k < NS; k++) {
        MT_CHECK_STATUS(mt_wait(hs[k], "fake.scaled"), HERD_OK);
        gt_to_host(sh[k], sd[k], (size_t)sizes[k] * fs);
        int wrong = 0;
        for (int64_t i = 0; i < sizes[k]; i++) {
            double acc = 0;
            for (int r = 0; r < mt_size; r++)
                acc += (double)mt_value(HERD_FLOAT32, k == 1 ? HERD_AVERAGE : HERD_SUM, r, i,
                                        salt + 100 + k);
            double want = (k == 1 ? acc / mt_size : acc) * pre[k] * post[k];
            wrong += (double)sh[k][i] != want;
        }
        MT_CHECK(wrong == 0);
        GT_CUDA(cudaFree(sd[k]));
        free(sh[k]);
    }
    /* What PreMulSum cannot do is refused at submit: other ops, integers. */
    float *d1 = gt_dev_alloc(4 * fs);
    MT_CHECK_STATUS(herd_push_pull_scaled("fake.scaled.max", d1, d1, 4, HERD_FLOAT32, HERD_MAX,
                                          2.0, 1.0, gt_device, &h),
                    HERD_ERR_NOT_SUPPORTED);
    MT_CHECK_STATUS(herd_push_pull_scaled("fake.scaled.int", d1, d1, 4, HERD_INT32, HERD_SUM,
                                          2.0, 1.0, gt_device, &h),
                    HERD_ERR_NOT_SUPPORTED);
    GT_CUDA(cudaFree(d1));
}
