/* gpu_timing.c - many small GPU tensors through herd, timed: what fusion buys on a GPU.
 *
 * Each iteration submits --tensors float32 tensors of --count elements (out of place, device
 * memory) and waits for all of them. Whether they travel fused is HERD_FUSION_THRESHOLD's
 * business: the default fuses them, 0 sends each alone; scripts/gpu-check runs this program
 * both ways. Rank 0 prints one human line and one machine line:
 *   RESULT|<mode>|<ranks>|<plane>|<tensors>|<bytes each>|<iters>|<median ms>|<min ms>|<mean ms>
 * where each iteration's time is the slowest rank's. The last iteration's results are checked
 * exactly. Exits 77 without a CUDA device, like the tests. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"
#include "herd.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--tensors N] [--count ELEMENTS] [--iters N] [--warmup N] "
            "[--mode LABEL]\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    int tensors = 256, iters = 50, warmup = 5;
    long long count = 1024;
    const char *mode = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage(argv[0]);
        if (strcmp(argv[i], "--tensors") == 0)
            tensors = atoi(argv[++i]);
        else if (strcmp(argv[i], "--count") == 0)
            count = atoll(argv[++i]);
        else if (strcmp(argv[i], "--iters") == 0)
            iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0)
            warmup = atoi(argv[++i]);
        else if (strcmp(argv[i], "--mode") == 0)
            mode = argv[++i];
        else
            return usage(argv[0]);
    }
    if (tensors < 1 || count < 1 || iters < 1 || warmup < 0)
        return usage(argv[0]);
    if (mode == NULL) {
        const char *t = getenv("HERD_FUSION_THRESHOLD");
        mode = t != NULL && strcmp(t, "0") == 0 ? "unfused" : "fused";
    }

    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS ||
        provided < MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "gpu_timing: MPI_Init_thread(MPI_THREAD_MULTIPLE) failed\n");
        return 1;
    }
    int rc = gt_probe("gpu_timing");
    if (rc != 0) {
        MPI_Finalize();
        return rc;
    }
    rc = herd_init();
    if (rc != HERD_OK) {
        fprintf(stderr, "gpu_timing: herd_init: %s: %s\n", herd_status_name(rc),
                herd_last_error());
        MPI_Finalize();
        return 1;
    }

    size_t bytes = (size_t)count * sizeof(float);
    float *one = malloc(bytes);
    for (long long i = 0; i < count; i++)
        one[i] = (float)(mt_rank + 1);
    float **send = calloc((size_t)tensors, sizeof *send);
    float **recv = calloc((size_t)tensors, sizeof *recv);
    herd_handle_t *h = calloc((size_t)tensors, sizeof *h);
    char (*names)[32] = calloc((size_t)tensors, sizeof *names);
    double *ms = calloc((size_t)iters, sizeof *ms);
    for (int t = 0; t < tensors; t++) {
        send[t] = gt_dev_alloc(bytes);
        recv[t] = gt_dev_alloc(bytes);
        gt_to_device(send[t], one, bytes);
        snprintf(names[t], sizeof names[t], "gpu.timing.%d", t);
        int64_t key = -1; /* declared in order: the order every rank reduces them in */
        if (herd_declare_tensor(names[t], &key) != HERD_OK)
            fprintf(stderr, "[rank %d] gpu_timing: declare %s: %s\n", mt_rank, names[t],
                    herd_last_error());
    }
    GT_CUDA(cudaDeviceSynchronize());

    int failed = 0;
    for (int it = -warmup; it < iters && !failed; it++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = gt_now_ms();
        for (int t = 0; t < tensors && !failed; t++) {
            rc = herd_push_pull(names[t], send[t], recv[t], count, HERD_FLOAT32, HERD_SUM,
                                gt_device, &h[t]);
            if (rc != HERD_OK) {
                fprintf(stderr, "[rank %d] gpu_timing: submit %s: %s: %s\n", mt_rank, names[t],
                        herd_status_name(rc), herd_last_error());
                failed = 1;
            }
        }
        for (int t = 0; t < tensors && !failed; t++) {
            rc = herd_wait_handle(h[t], -1);
            if (rc != HERD_OK) {
                fprintf(stderr, "[rank %d] gpu_timing: wait %s: %s: %s\n", mt_rank, names[t],
                        herd_status_name(rc), herd_last_error());
                failed = 1;
            }
        }
        double local = gt_now_ms() - t0, slowest = local;
        MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (it >= 0)
            ms[it] = slowest;
    }

    /* Exact check of the last iteration: every element is 1 + 2 + ... + size. */
    float want = (float)(mt_size * (mt_size + 1) / 2);
    long long bad = 0;
    for (int t = 0; t < tensors && !failed; t++) {
        gt_to_host(one, recv[t], bytes);
        for (long long i = 0; i < count; i++)
            bad += one[i] != want;
    }
    if (bad > 0) {
        fprintf(stderr, "[rank %d] gpu_timing: %lld wrong elements (want %g)\n", mt_rank, bad,
                (double)want);
        failed = 1;
    }
    int any_failed = failed;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

    if (mt_rank == 0 && !any_failed) {
        double sum = 0;
        for (int i = 0; i < iters; i++)
            sum += ms[i];
        qsort(ms, (size_t)iters, sizeof *ms, cmp_double);
        double median = iters % 2 ? ms[iters / 2] : (ms[iters / 2 - 1] + ms[iters / 2]) / 2;
        const char *plane = gt_nccl ? "nccl" : "mpi-staged";
        const char *thr = getenv("HERD_FUSION_THRESHOLD");
        printf("gpu_timing: %s, %d rank(s), GPU plane %s, %d tensors x %zu bytes, "
               "HERD_FUSION_THRESHOLD=%s, %d iterations: median %.3f ms, min %.3f ms, "
               "mean %.3f ms per step\n",
               mode, mt_size, plane, tensors, bytes, thr != NULL ? thr : "(default)", iters,
               median, ms[0], sum / iters);
        printf("RESULT|%s|%d|%s|%d|%zu|%d|%.3f|%.3f|%.3f\n", mode, mt_size, plane, tensors,
               bytes, iters, median, ms[0], sum / iters);
        fflush(stdout);
    }

    for (int t = 0; t < tensors; t++) {
        GT_CUDA(cudaFree(send[t]));
        GT_CUDA(cudaFree(recv[t]));
    }
    free(send);
    free(recv);
    free(h);
    free(names);
    free(ms);
    free(one);
    rc = herd_shutdown();
    MPI_Finalize();
    return any_failed || rc != HERD_OK ? 1 : 0;
}
