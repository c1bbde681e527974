/* timeline_workload.c - the job behind the timeline tests (run_timeline.py runs it under
 * mpiexec with HERD_TIMELINE set, then checks the trace).
 *
 * Three steps over a fixed set of named tensors, every rank submitting in its own random order
 * and waiting in another: twelve small float32 sums and four small int32 maxima (fused, when
 * they are ready in the same round), tensors at or above HERD_FUSION_THRESHOLD (reduced alone),
 * an empty one, one whose name needs JSON escaping, two small broadcasts from the last rank and
 * a big one from rank 0. In the last step one small tensor changes its count (renegotiated).
 * Every result is checked exactly. Rank 0 writes a manifest (JSON: ranks, threshold, steps and
 * every tensor's kind and bytes per step) for the checker.
 *
 * Usage: timeline_workload --manifest PATH [--seed S] [--crash]
 * --crash: after the last step every rank sleeps 250 ms (the timeline writer flushes every
 * 20 ms) and calls _exit(0) without herd_shutdown or MPI_Finalize, leaving the trace
 * unterminated. The exit status is 0 when every result was right (then mpiexec reports the
 * improper exit, which run_timeline.py expects). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "herd.h"
#include "mpi_test.h"

enum { NSTEPS = 3, MAX_TENSORS = 32 };

typedef struct spec {
    char name[64];
    int broadcast, dtype, op, root;
    int64_t count[NSTEPS];
    void *buf, *out;
    herd_handle_t handle;
} spec_t;

static spec_t specs[MAX_TENSORS];
static int nspecs;

static spec_t *add(const char *name, int broadcast, int dtype, int op, int root, int64_t count)
{
    spec_t *s = &specs[nspecs++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->broadcast = broadcast;
    s->dtype = dtype;
    s->op = broadcast ? MT_BCAST : op;
    s->root = root;
    for (int i = 0; i < NSTEPS; i++)
        s->count[i] = count;
    return s;
}

static void make_specs(int64_t threshold)
{
    char name[64];
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "grad.%02d", i);
        add(name, 0, HERD_FLOAT32, HERD_SUM, 0, 20 + 23 * i);
    }
    specs[3].count[NSTEPS - 1] = 99; /* renegotiated in the last step */
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "norm.%d", i);
        add(name, 0, HERD_INT32, HERD_MAX, 0, 8 + 16 * i);
    }
    /* At or above the threshold: reduced alone, in place or not. */
    add("big.f64", 0, HERD_FLOAT64, HERD_SUM, 0, threshold / 8 + 5);
    add("big.f16", 0, HERD_FLOAT16, HERD_AVERAGE, 0, threshold / 2 + 7);
    add("empty", 0, HERD_FLOAT32, HERD_SUM, 0, 0);
    add("esc.\"q\"\\b\tx", 0, HERD_INT8, HERD_MIN, 0, 10);
    add("bcast.small.0", 1, HERD_INT32, 0, mt_size - 1, 100);
    add("bcast.small.1", 1, HERD_INT32, 0, mt_size - 1, 200);
    add("bcast.big", 1, HERD_FLOAT32, 0, 0, threshold / 4 + 3);
    for (int i = 0; i < nspecs; i++) {
        int64_t most = 0;
        for (int k = 0; k < NSTEPS; k++)
            most = specs[i].count[k] > most ? specs[i].count[k] : most;
        size_t bytes = (size_t)most * mt_dtype_size(specs[i].dtype);
        specs[i].buf = mt_alloc(bytes);
        /* Odd tensors out of place. */
        specs[i].out = !specs[i].broadcast && i % 2 ? mt_alloc(bytes) : specs[i].buf;
    }
}

static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int write_manifest(const char *path, int64_t threshold)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    fprintf(f, "{\"ranks\": %d, \"threshold\": %lld, \"steps\": %d, \"tensors\": [\n", mt_size,
            (long long)threshold, NSTEPS);
    for (int i = 0; i < nspecs; i++) {
        const spec_t *s = &specs[i];
        fprintf(f, "  {\"name\": ");
        put_json_string(f, s->name);
        fprintf(f, ", \"kind\": \"%s\", \"root\": %d, \"bytes\": [",
                s->broadcast ? "broadcast" : "allreduce", s->broadcast ? s->root : -1);
        for (int k = 0; k < NSTEPS; k++)
            fprintf(f, "%s%lld", k ? ", " : "",
                    (long long)(s->count[k] * (int64_t)mt_dtype_size(s->dtype)));
        fprintf(f, "]}%s\n", i + 1 < nspecs ? "," : "");
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static uint64_t salt_of(uint64_t seed, int step, int i)
{
    return mt_mix(seed ^ mt_mix((uint64_t)step << 16 | (uint64_t)i));
}

/* One step: submit everything in this rank's order, wait in another, check. Returns failures. */
static long run_step(uint64_t seed, int step)
{
    long failures = 0;
    int64_t order[MAX_TENSORS];
    mt_rng_t rng = {.state = mt_mix(seed + 1000 * (uint64_t)mt_rank + (uint64_t)step)};
    for (int i = 0; i < nspecs; i++) {
        spec_t *s = &specs[i];
        int64_t n = s->count[step];
        uint64_t salt = salt_of(seed, step, i);
        if (!s->broadcast || mt_rank == s->root)
            mt_fill(s->dtype, s->op, mt_rank, salt, s->buf, n);
        else
            memset(s->buf, 0xa5, (size_t)n * mt_dtype_size(s->dtype));
        order[i] = i;
    }
    mt_shuffle(&rng, order, nspecs);
    for (int j = 0; j < nspecs; j++) {
        spec_t *s = &specs[order[j]];
        int64_t n = s->count[step];
        int rc = s->broadcast ? herd_broadcast(s->name, s->buf, n, s->dtype, s->root,
                                               HERD_DEVICE_CPU, &s->handle)
                              : herd_push_pull(s->name, s->buf, s->out, n, s->dtype, s->op,
                                               HERD_DEVICE_CPU, &s->handle);
        if (rc != HERD_OK) {
            fprintf(stderr, "[rank %d] submit '%s': %s: %s\n", mt_rank, s->name,
                    herd_status_name(rc), herd_last_error());
            failures++;
            s->handle = 0;
        }
    }
    mt_shuffle(&rng, order, nspecs);
    for (int j = 0; j < nspecs; j++) {
        int i = (int)order[j];
        spec_t *s = &specs[i];
        if (s->handle == 0)
            continue;
        int rc = mt_wait(s->handle, s->name);
        if (rc != HERD_OK) {
            fprintf(stderr, "[rank %d] '%s': %s: %s\n", mt_rank, s->name, herd_status_name(rc),
                    herd_last_error());
            failures++;
            continue;
        }
        int64_t n = s->count[step];
        uint64_t salt = salt_of(seed, step, i);
        int64_t bad = s->broadcast
                          ? mt_verify_broadcast(s->dtype, s->root, salt, s->buf, n, s->name)
                          : mt_verify_allreduce(s->dtype, s->op, mt_size, salt, s->out, n,
                                                s->name);
        failures += bad > 0;
    }
    return failures;
}

int main(int argc, char **argv)
{
    const char *manifest = NULL;
    uint64_t seed = 1;
    int crash = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--manifest") == 0 && i + 1 < argc) {
            manifest = argv[++i];
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--crash") == 0) {
            crash = 1;
        } else {
            fprintf(stderr, "usage: %s --manifest PATH [--seed S] [--crash]\n", argv[0]);
            return 2;
        }
    }
    if (manifest == NULL) {
        fprintf(stderr, "usage: %s --manifest PATH [--seed S] [--crash]\n", argv[0]);
        return 2;
    }
    setvbuf(stderr, NULL, _IONBF, 0);
    int rc = herd_init();
    if (rc != HERD_OK) {
        fprintf(stderr, "herd_init: %s: %s\n", herd_status_name(rc), herd_last_error());
        return 1;
    }
    mt_rank = herd_rank();
    mt_size = herd_size();
    int64_t threshold = mt_fusion_threshold();
    make_specs(threshold);
    long failures = 0;
    if (mt_rank == 0) {
        printf("workload: seed %llu, %d ranks, %d tensors x %d steps, threshold %lld bytes%s\n",
               (unsigned long long)seed, mt_size, nspecs, NSTEPS, (long long)threshold,
               crash ? ", then every rank exits without herd_shutdown" : "");
        fflush(stdout);
        failures += write_manifest(manifest, threshold) != 0;
    }
    for (int step = 0; step < NSTEPS; step++)
        failures += run_step(seed, step);
    long all = 0;
    MPI_Allreduce(&failures, &all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (mt_rank == 0) {
        printf("workload: %d operations per rank, %ld wrong result(s) in all\n",
               nspecs * NSTEPS, all);
        fflush(stdout);
    }
    if (crash) {
        /* The writer flushes every 20 ms; 250 ms leaves room for a loaded machine. */
        struct timespec pause = {0, 250 * 1000 * 1000};
        nanosleep(&pause, NULL);
        printf("crash: rank %d exits without herd_shutdown\n", mt_rank);
        fflush(stdout);
        /* Exit together: mpiexec kills the ranks still running once one exits improperly. */
        MPI_Barrier(MPI_COMM_WORLD);
        _exit(all > 0 ? 1 : 0);
    }
    rc = herd_shutdown();
    if (rc != HERD_OK) {
        fprintf(stderr, "[rank %d] herd_shutdown: %s: %s\n", mt_rank, herd_status_name(rc),
                herd_last_error());
        return 1;
    }
    return all > 0 ? 1 : 0;
}
