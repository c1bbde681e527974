/* herd_bench.c - herd against plain MPI on the same data, in one process and one run.
 *
 *   mpirun -np 2 --bind-to none ./build/bench/herd_bench [options]     (--help lists them)
 *
 * Sections: coordinator idle CPU, small-message latency, many tiny tensors, gradient-step replay
 * of real models (workload), and a bandwidth sweep. Every timed iteration starts after an
 * MPI_Barrier; its time is the maximum over ranks; herd and the plain-MPI baselines alternate
 * iteration by iteration after a warm-up; figures are medians with min and max. Results are
 * checked against exact expected values and the exit status is non-zero if any is wrong.
 *
 * herd talks over its own duplicated communicators; the baselines use MPI_COMM_WORLD. The program
 * initialises MPI itself with MPI_THREAD_MULTIPLE (herd requires it when the program owns MPI).
 */
#include <herd.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

/* ---- options ------------------------------------------------------------------------------- */

static const char *const all_workloads[] = {"resnet50", "bert_base", "gpt2_small",
                                            "mobilenet_v2", "resnet50:flat"};

static void usage(FILE *f)
{
    fputs(
        "usage: mpirun -np N [mpirun flags] herd_bench [options]\n"
        "  --only LIST         sections: idle,latency,tiny,workload,sweep,collectives\n"
        "                      (default: all; collectives: broadcast, allgather and\n"
        "                      reducescatter sweeps)\n"
        "  --workloads LIST    resnet50,bert_base,gpt2_small,mobilenet_v2 (default: all four, and\n"
        "                      resnet50:flat); NAME:flat lays every gradient out as a view of one\n"
        "                      buffer and adds baseline (g), that buffer reduced in 4 MiB chunks\n"
        "  --workload-dir DIR  where NAME.txt lives (default: ../shared/workloads if present,\n"
        "                      else the copy in the bench's source directory)\n"
        "  --iters N           timed iterations for every section (default: per section:\n"
        "                      workload 10, tiny 20, latency 2000, sweep 5..500 by size)\n"
        "  --warmup N          warm-up iterations for every section (default: per section)\n"
        "  --min-bytes N       smallest sweep size (default 1K; K/M/G suffixes)\n"
        "  --max-bytes N       largest sweep size (default 256M)\n"
        "  --sweep-factor 2|4  sweep sizes grow by this factor (default 4)\n"
        "  --sweep-op OP       average (default, as the workloads) or sum (raw allreduce)\n"
        "  --csv FILE          write the sweep as CSV (plot it with bench/plot.gp)\n"
        "  --tiny-count N      tensors in the tiny-tensor step (default 10000)\n"
        "  --idle-ms N         idle measurement length (default 2000)\n"
        "  --memcpy-bytes N    buffer for the memcpy bandwidth B (default 256M)\n"
        "  --steady-steps N    back-to-back steps for b2b time and allocations (default 3)\n"
        "  --check             verify every timed iteration (on fresh data, outside timing)\n"
        "  --timeout-ms N      watchdog: a herd wait stuck this long aborts the job as a hang\n"
        "                      (default 120000; 0 = no watchdog)\n"
        "  --wait-ms N         timeout given to herd_wait_handle (default -1: no deadline, as a\n"
        "                      framework waits; herd may then drive its rounds on the waiting\n"
        "                      thread; N >= 0 measures the deadline path, re-waiting on timeout)\n"
        "  --quick             tiny settings for a smoke test (implies --check)\n"
        "  --strict-allocs     exit 1 when herd itself allocates in a back-to-back (steady)\n"
        "                      window or while idle\n"
        "  --json              print one JSON object instead of tables\n"
        "  --help\n",
        f);
}

static int parse_sections(const char *list, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"idle", BENCH_SEC_IDLE},         {"cpu", BENCH_SEC_IDLE},
                 {"latency", BENCH_SEC_LATENCY},   {"tiny", BENCH_SEC_TINY},
                 {"workload", BENCH_SEC_WORKLOAD}, {"workloads", BENCH_SEC_WORKLOAD},
                 {"sweep", BENCH_SEC_SWEEP},       {"bandwidth", BENCH_SEC_SWEEP},
                 {"collectives", BENCH_SEC_COLLECTIVES},
                 {"all", BENCH_SEC_ALL}};
    unsigned bits = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        size_t i = 0;
        while (i < sizeof names / sizeof names[0] &&
               !(strlen(names[i].name) == len && strncmp(names[i].name, p, len) == 0))
            i++;
        if (i == sizeof names / sizeof names[0])
            return -1;
        bits |= names[i].bit;
        p += len;
        if (*p == ',')
            p++;
    }
    *out = bits;
    return bits ? 0 : -1;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Returns 0 to run, 1 for --help, -1 on a bad option (message printed by rank 0). */
static int parse_options(bench_opts_t *o, int argc, char **argv, int rank)
{
    *o = (bench_opts_t){.sections = BENCH_SEC_ALL, .iters = -1, .warmup = -1,
                        .min_bytes = 1 << 10, .max_bytes = INT64_C(256) << 20,
                        .sweep_factor = 4, .sweep_op = HERD_AVERAGE, .tiny_count = 10000,
                        .idle_ms = 2000, .memcpy_bytes = INT64_C(256) << 20, .memcpy_reps = 9,
                        .steady_steps = 3, .timeout_ms = 120000, .wait_ms = -1};
    int set_max = 0, set_tiny = 0, set_idle = 0, set_memcpy = 0, set_steady = 0;
    static char workload_list[1024];
    const char *bad = NULL;
    for (int i = 1; i < argc && bad == NULL; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            if (rank == 0)
                usage(stdout);
            return 1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1, takes = 0;
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = 1, takes = 0;
        } else if (strcmp(a, "--check") == 0) {
            o->check_every = 1, takes = 0;
        } else if (strcmp(a, "--strict-allocs") == 0) {
            o->strict_allocs = 1, takes = 0;
        } else if (v == NULL) {
            bad = a;
        } else if (strcmp(a, "--only") == 0) {
            if (parse_sections(v, &o->sections) != 0)
                bad = a;
        } else if (strcmp(a, "--workloads") == 0) {
            snprintf(workload_list, sizeof workload_list, "%s", v);
            o->nworkloads = 0;
            for (char *s = strtok(workload_list, ","); s && o->nworkloads < BENCH_MAX_WORKLOADS;
                 s = strtok(NULL, ","))
                o->workloads[o->nworkloads++] = s;
            if (o->nworkloads == 0)
                bad = a;
        } else if (strcmp(a, "--workload-dir") == 0) {
            o->workload_dir = v;
        } else if (strcmp(a, "--iters") == 0) {
            if (parse_int(v, 1, 10000000, &o->iters) != 0)
                bad = a;
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_int(v, 0, 10000000, &o->warmup) != 0)
                bad = a;
        } else if (strcmp(a, "--min-bytes") == 0) {
            if (bench_parse_bytes(v, &o->min_bytes) != 0 || o->min_bytes < 4)
                bad = a;
        } else if (strcmp(a, "--max-bytes") == 0) {
            if (bench_parse_bytes(v, &o->max_bytes) != 0 || o->max_bytes < 4)
                bad = a;
            set_max = 1;
        } else if (strcmp(a, "--sweep-factor") == 0) {
            if (parse_int(v, 2, 4, &o->sweep_factor) != 0 || o->sweep_factor == 3)
                bad = a;
        } else if (strcmp(a, "--sweep-op") == 0) {
            if (strcmp(v, "average") == 0)
                o->sweep_op = HERD_AVERAGE;
            else if (strcmp(v, "sum") == 0)
                o->sweep_op = HERD_SUM;
            else
                bad = a;
        } else if (strcmp(a, "--csv") == 0) {
            o->csv = v;
        } else if (strcmp(a, "--tiny-count") == 0) {
            if (parse_int(v, 1, 1000000, &o->tiny_count) != 0)
                bad = a;
            set_tiny = 1;
        } else if (strcmp(a, "--idle-ms") == 0) {
            if (parse_int(v, 1, 600000, &o->idle_ms) != 0)
                bad = a;
            set_idle = 1;
        } else if (strcmp(a, "--memcpy-bytes") == 0) {
            if (bench_parse_bytes(v, &o->memcpy_bytes) != 0 || o->memcpy_bytes < 4096)
                bad = a;
            set_memcpy = 1;
        } else if (strcmp(a, "--steady-steps") == 0) {
            if (parse_int(v, 1, 100000, &o->steady_steps) != 0)
                bad = a;
            set_steady = 1;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            int t = 0;
            if (parse_int(v, 0, INT_MAX, &t) != 0)
                bad = a;
            o->timeout_ms = t;
        } else if (strcmp(a, "--wait-ms") == 0) {
            int t = 0;
            if (parse_int(v, -1, INT_MAX, &t) != 0)
                bad = a;
            o->wait_ms = t;
        } else {
            bad = a;
        }
        i += takes;
    }
    if (bad != NULL) {
        if (rank == 0) {
            fprintf(stderr, "herd_bench: bad or incomplete option '%s'\n", bad);
            usage(stderr);
        }
        return -1;
    }
    if (o->nworkloads == 0) {
        if (o->quick) {
            o->workloads[o->nworkloads++] = "mobilenet_v2";
        } else {
            for (size_t i = 0; i < sizeof all_workloads / sizeof all_workloads[0]; i++)
                o->workloads[o->nworkloads++] = all_workloads[i];
        }
    }
    if (o->quick) {
        o->check_every = 1;
        if (!set_max)
            o->max_bytes = 1 << 20;
        if (!set_tiny)
            o->tiny_count = 1000;
        if (!set_idle)
            o->idle_ms = 200;
        if (!set_memcpy)
            o->memcpy_bytes = 64 << 20;
        if (!set_steady)
            o->steady_steps = 2;
        o->memcpy_reps = 3;
    }
    o->min_bytes &= ~(int64_t)3; /* whole float32 elements */
    o->max_bytes &= ~(int64_t)3;
    if (o->min_bytes > o->max_bytes)
        o->min_bytes = o->max_bytes;
    return 0;
}

/* ---- idle ---------------------------------------------------------------------------------- */

/* Process CPU time while the main thread sleeps, as % of one core; every rank's value lands in
 * pct[] on rank 0, and allocs[] gets the heap allocations in the window (all, libherd's own),
 * max over ranks. */
static void idle_cpu(bench_t *b, double *pct, double *allocs)
{
    bench_alloc_t a0, a1;
    MPI_Barrier(MPI_COMM_WORLD);
    bench_alloc_read(&a0);
    double c0 = bench_cpu(), t0 = bench_wall();
    bench_sleep_ms(b->opt.idle_ms);
    double c1 = bench_cpu(), t1 = bench_wall();
    bench_alloc_read(&a1);
    double mine = 100.0 * (c1 - c0) / (t1 - t0);
    double al[2] = {(double)(a1.allocs - a0.allocs), (double)(a1.lib_allocs - a0.lib_allocs)};
    MPI_Gather(&mine, 1, MPI_DOUBLE, pct, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    MPI_Reduce(al, allocs, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (b->rank == 0 && b->alloc_herd && allocs[1] > 0) {
        b->herd_alloc_windows++;
        fprintf(stderr, "herd_bench: herd allocated %.0f times while idle\n", allocs[1]);
    }
}

static void print_idle(bench_t *b, const char *what, const double *pct, const double *allocs)
{
    double mx = 0, sum = 0;
    for (int r = 0; r < b->size; r++) {
        mx = pct[r] > mx ? pct[r] : mx;
        sum += pct[r];
    }
    bench_text(b, "   %-44s max %6.2f %%   mean %6.2f %%   (", what, mx, sum / b->size);
    for (int r = 0; r < b->size && r < 8; r++)
        bench_text(b, "%srank %d: %.2f", r ? ", " : "", r, pct[r]);
    bench_text(b, "%s)", b->size > 8 ? ", ..." : "");
    if (b->alloc_ok)
        bench_text(b, ", %.0f allocations", allocs[0]);
    if (b->alloc_herd)
        bench_text(b, " (%.0f by herd)", allocs[1]);
    bench_text(b, "\n");
}

static void json_idle(bench_t *b, const char *key, const double *pct, const double *allocs)
{
    bench_json_begin(b, key);
    bench_json_array(b, "cpu_pct_per_rank");
    for (int r = 0; r < b->size; r++)
        bench_json_num(b, NULL, pct[r]);
    bench_json_array_end(b);
    bench_json_num(b, "allocs", b->alloc_ok ? allocs[0] : NAN);
    bench_json_num(b, "herd_allocs", b->alloc_herd ? allocs[1] : NAN);
    bench_json_end(b);
}

/* ---- latency ------------------------------------------------------------------------------- */

typedef struct latency {
    bench_t *b;
    float x;
    int block;
} latency_t;

static void lat_prepare(void *ctx)
{
    latency_t *l = ctx;
    l->x = bench_rank_value(0, 5, l->b->rank, l->b->size);
}

static int64_t lat_verify(void *ctx, const char *method)
{
    latency_t *l = ctx;
    if (l->x == bench_value(0, 5))
        return 0;
    fprintf(stderr, "herd_bench: rank %d: WRONG RESULT: latency, method %s: %.9g, expected %.9g\n",
            l->b->rank, method, l->x, bench_value(0, 5));
    return 1;
}

static void lat_herd(void *arg)
{
    latency_t *l = arg;
    herd_handle_t h = bench_herd_submit("bench.latency", &l->x, 1, HERD_AVERAGE);
    bench_herd_wait(h, "bench.latency", l->b->opt.wait_ms);
}

static void lat_mpi(void *arg)
{
    latency_t *l = arg;
    bench_mpi_allreduce(&l->x, 1, 1);
}

static void lat_herd_block(void *arg)
{
    latency_t *l = arg;
    for (int i = 0; i < l->block; i++)
        lat_herd(arg);
}

static void lat_mpi_block(void *arg)
{
    latency_t *l = arg;
    for (int i = 0; i < l->block; i++)
        lat_mpi(arg);
}

static void section_latency(bench_t *b)
{
    latency_t l = {.b = b, .block = b->opt.quick ? 10 : 100};
    lat_prepare(&l);
    int iters = b->opt.iters > 0 ? b->opt.iters : (b->opt.quick ? 100 : 2000);
    int warmup = b->opt.warmup >= 0 ? b->opt.warmup : iters / 10;
    int blocks = iters / l.block > 3 ? iters / l.block : 3;
    const bench_method_t m[2] = {{"herd", "herd push_pull + wait", lat_herd, &l},
                                 {"mpi", "MPI_Allreduce", lat_mpi, &l}};
    const bench_method_t mb[2] = {{"herd", "herd, back to back", lat_herd_block, &l},
                                  {"mpi", "MPI_Allreduce, back to back", lat_mpi_block, &l}};
    const bench_checker_t chk = {lat_prepare, lat_verify, &l};
    double *wall = calloc((size_t)(2 * iters), sizeof *wall);
    double *cpu = calloc((size_t)(2 * iters), sizeof *cpu);
    double *bwall = calloc((size_t)(2 * blocks), sizeof *bwall);
    double *bcpu = calloc((size_t)(2 * blocks), sizeof *bcpu);
    bench_run_interleaved(b, m, 2, warmup, iters, &chk, wall, cpu);
    int64_t before[BENCH_MAX_COUNTERS], after[BENCH_MAX_COUNTERS];
    bench_counters_snap(before);
    bench_run_interleaved(b, mb, 2, 1, blocks, &chk, bwall, bcpu);
    bench_counters_snap(after);
    int64_t bad = bench_check_methods(b, m, 2, &chk);
    bench_steady_t st[2] = {bench_steady(b, &m[0], 200), bench_steady(b, &m[1], 200)};

    bench_text(b,
               "\n== latency: one 4-byte float32 average; %d iterations after %d warm-up, "
               "interleaved; back to back: %d blocks of %d\n",
               iters, warmup, blocks, l.block);
    bench_text(b, "   %-30s %30s %12s %10s %8s\n", "", "us/op: median [min - max]", "CPU us/op",
               "allocs/op", "by herd");
    bench_json_begin(b, "latency");
    bench_json_int(b, "bytes", 4);
    bench_json_int(b, "iters", iters);
    bench_json_int(b, "warmup", warmup);
    bench_json_int(b, "block", l.block);
    bench_json_int(b, "blocks", blocks);
    for (int k = 0; k < 2; k++) {
        bench_stat_t w = bench_stat_scale(bench_stat(wall + k * iters, iters), 1e6);
        bench_stat_t c = bench_stat_scale(bench_stat(cpu + k * iters, iters), 1e6);
        bench_stat_t bw = bench_stat_scale(bench_stat(bwall + k * blocks, blocks), 1e6 / l.block);
        bench_stat_t bc = bench_stat_scale(bench_stat(bcpu + k * blocks, blocks), 1e6 / l.block);
        char al[32] = "n/a", ah[32] = "n/a";
        if (b->alloc_ok)
            snprintf(al, sizeof al, "%.2f", st[k].allocs);
        if (b->alloc_herd)
            snprintf(ah, sizeof ah, "%.2f", st[k].herd_allocs);
        bench_text(b, "   %-30s %10.2f [%8.2f - %8.2f] %12.2f %10s %8s\n", m[k].label, w.median,
                   w.min, w.max, c.median, al, ah);
        bench_text(b, "   %-30s %10.2f [%8.2f - %8.2f] %12.2f\n", mb[k].label, bw.median, bw.min,
                   bw.max, bc.median);
        bench_json_begin(b, m[k].key);
        bench_json_stat(b, "us", w);
        bench_json_stat(b, "cpu_us", c);
        bench_json_stat(b, "back_to_back_us", bw);
        bench_json_stat(b, "back_to_back_cpu_us", bc);
        bench_json_num(b, "allocs_per_op", b->alloc_ok ? st[k].allocs : NAN);
        bench_json_num(b, "herd_allocs_per_op", b->alloc_herd ? st[k].herd_allocs : NAN);
        bench_json_end(b);
    }
    bench_counters_per(b, "herd back to back", "op", 0, before, after);
    bench_json_int(b, "wrong", (long long)bad);
    bench_json_end(b);
    free(wall);
    free(cpu);
    free(bwall);
    free(bcpu);
}

/* ---- many tiny tensors --------------------------------------------------------------------- */

typedef struct tiny {
    bench_t *b;
    int n;
    char **names;
    int64_t *count, *offset;
    float *data, *packed;
    int64_t total;
    herd_handle_t *handles;
} tiny_t;

static void tiny_prepare(void *ctx)
{
    tiny_t *t = ctx;
    for (int i = 0; i < t->n; i++)
        for (int64_t k = 0; k < t->count[i]; k++)
            t->data[t->offset[i] + k] = bench_rank_value(i, k, t->b->rank, t->b->size);
}

static int64_t tiny_verify(void *ctx, const char *method)
{
    tiny_t *t = ctx;
    int64_t bad = 0;
    for (int i = 0; i < t->n; i++)
        for (int64_t k = 0; k < t->count[i]; k++)
            if (t->data[t->offset[i] + k] != bench_value(i, k) && bad++ == 0)
                fprintf(stderr,
                        "herd_bench: rank %d: WRONG RESULT: tiny, method %s: tensor '%s' element "
                        "%lld is %.9g, expected %.9g\n",
                        t->b->rank, method, t->names[i], (long long)k,
                        t->data[t->offset[i] + k], bench_value(i, k));
    return bad;
}

/* Submitted last-declared first, as a backward pass would. */
static void tiny_herd(void *arg)
{
    tiny_t *t = arg;
    for (int i = t->n - 1; i >= 0; i--)
        t->handles[i] =
            bench_herd_submit(t->names[i], t->data + t->offset[i], t->count[i], HERD_AVERAGE);
    for (int i = t->n - 1; i >= 0; i--)
        bench_herd_wait(t->handles[i], t->names[i], t->b->opt.wait_ms);
}

static void tiny_mpi(void *arg)
{
    tiny_t *t = arg;
    for (int i = t->n - 1; i >= 0; i--)
        bench_mpi_allreduce(t->data + t->offset[i], t->count[i], 1);
}

static void tiny_packed(void *arg)
{
    tiny_t *t = arg;
    memcpy(t->packed, t->data, sizeof(float) * (size_t)t->total);
    bench_mpi_allreduce(t->packed, t->total, 1);
    memcpy(t->data, t->packed, sizeof(float) * (size_t)t->total);
}

static void section_tiny(bench_t *b)
{
    tiny_t t = {.b = b, .n = b->opt.tiny_count};
    t.names = calloc((size_t)t.n, sizeof *t.names);
    t.count = calloc((size_t)t.n, sizeof *t.count);
    t.offset = calloc((size_t)t.n, sizeof *t.offset);
    t.handles = calloc((size_t)t.n, sizeof *t.handles);
    unsigned seed = 2463534242u; /* xorshift32: sizes agreed on every rank */
    for (int i = 0; i < t.n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        t.count[i] = 1 + seed % 16;
        t.offset[i] = t.total;
        t.total += t.count[i];
        t.names[i] = malloc(32);
        snprintf(t.names[i], 32, "tiny.%06d", i);
        int64_t key = 0;
        bench_herd_check(herd_declare_tensor(t.names[i], &key), "herd_declare_tensor",
                         t.names[i]);
    }
    t.data = calloc((size_t)t.total, sizeof(float));
    t.packed = calloc((size_t)t.total, sizeof(float));
    tiny_prepare(&t);
    int iters = b->opt.iters > 0 ? b->opt.iters : (b->opt.quick ? 3 : 20);
    int warmup = b->opt.warmup >= 0 ? b->opt.warmup : (b->opt.quick ? 1 : 3);
    const bench_method_t m[3] = {
        {"herd", "herd", tiny_herd, &t},
        {"mpi", "MPI_Allreduce per tensor", tiny_mpi, &t},
        {"packed", "one packed MPI_Allreduce (+copies)", tiny_packed, &t}};
    const bench_checker_t chk = {tiny_prepare, tiny_verify, &t};
    double *wall = calloc((size_t)(3 * iters), sizeof *wall);
    double *cpu = calloc((size_t)(3 * iters), sizeof *cpu);
    bench_run_interleaved(b, m, 3, warmup, iters, &chk, wall, cpu);
    int64_t bad = bench_check_methods(b, m, 3, &chk);
    bench_steady_t st[3];
    for (int k = 0; k < 3; k++)
        st[k] = bench_steady(b, &m[k], b->opt.steady_steps);

    bench_text(b,
               "\n== many tiny tensors: %d tensors of 1-16 float32 (%lld elements) per step; %d "
               "iterations after %d warm-up, interleaved\n",
               t.n, (long long)t.total, iters, warmup);
    bench_text(b, "   %-36s %28s %10s %9s | %9s %11s %8s\n", "", "step ms: median [min - max]",
               "us/tensor", "CPU ms", "b2b ms", "allocs/step", "by herd");
    bench_json_begin(b, "tiny");
    bench_json_int(b, "tensors", t.n);
    bench_json_int(b, "elements", (long long)t.total);
    bench_json_int(b, "iters", iters);
    bench_json_int(b, "warmup", warmup);
    for (int k = 0; k < 3; k++) {
        bench_stat_t w = bench_stat_scale(bench_stat(wall + k * iters, iters), 1e3);
        bench_stat_t c = bench_stat_scale(bench_stat(cpu + k * iters, iters), 1e3);
        char al[32] = "n/a", ah[32] = "n/a";
        if (b->alloc_ok)
            snprintf(al, sizeof al, "%.1f", st[k].allocs);
        if (b->alloc_herd)
            snprintf(ah, sizeof ah, "%.1f", st[k].herd_allocs);
        bench_text(b, "   %-36s %9.3f [%7.3f - %7.3f] %10.3f %9.3f | %9.3f %11s %8s\n",
                   m[k].label, w.median, w.min, w.max, w.median * 1e3 / t.n, c.median,
                   st[k].wall * 1e3, al, ah);
        bench_json_begin(b, m[k].key);
        bench_json_stat(b, "step_ms", w);
        bench_json_num(b, "us_per_tensor", w.median * 1e3 / t.n);
        bench_json_stat(b, "cpu_ms", c);
        bench_json_num(b, "steady_wall_ms", st[k].wall * 1e3);
        bench_json_num(b, "steady_cpu_ms", st[k].cpu * 1e3);
        bench_json_num(b, "allocs_per_step", b->alloc_ok ? st[k].allocs : NAN);
        bench_json_num(b, "herd_allocs_per_step", b->alloc_herd ? st[k].herd_allocs : NAN);
        bench_json_end(b);
    }
    bench_json_int(b, "wrong", (long long)bad);
    bench_json_end(b);
    for (int i = 0; i < t.n; i++)
        free(t.names[i]);
    free(t.names);
    free(t.count);
    free(t.offset);
    free(t.handles);
    free(t.data);
    free(t.packed);
    free(wall);
    free(cpu);
}

/* ---- bandwidth sweep ----------------------------------------------------------------------- */

typedef struct sweep {
    bench_t *b;
    float *buf;
    int64_t count;
    char name[64];
} sweep_t;

static void sweep_prepare(void *ctx)
{
    sweep_t *s = ctx;
    for (int64_t k = 0; k < s->count; k++)
        s->buf[k] = bench_rank_value(0, k, s->b->rank, s->b->size);
}

static int64_t sweep_verify(void *ctx, const char *method)
{
    sweep_t *s = ctx;
    float scale = s->b->opt.sweep_op == HERD_SUM ? (float)s->b->size : 1.0f;
    int64_t bad = 0;
    for (int64_t k = 0; k < s->count; k++)
        if (s->buf[k] != bench_value(0, k) * scale && bad++ == 0)
            fprintf(stderr,
                    "herd_bench: rank %d: WRONG RESULT: sweep %s, method %s: element %lld is "
                    "%.9g, expected %.9g\n",
                    s->b->rank, s->name, method, (long long)k, s->buf[k],
                    bench_value(0, k) * scale);
    return bad;
}

static void sweep_herd(void *arg)
{
    sweep_t *s = arg;
    herd_handle_t h = bench_herd_submit(s->name, s->buf, s->count, s->b->opt.sweep_op);
    bench_herd_wait(h, s->name, s->b->opt.wait_ms);
}

static void sweep_mpi(void *arg)
{
    sweep_t *s = arg;
    bench_mpi_allreduce(s->buf, s->count, s->b->opt.sweep_op == HERD_AVERAGE);
}

/* One size of a herd-vs-MPI sweep: iterations from the options, or enough to move `budget`
 * bytes (`moved` a step) within [5, hi] (quick: [3, 20]); warm-up from the options, or 10 up to
 * 1 MiB and 2 above; the two methods interleaved and checked; wall-time statistics in us in
 * w[2]. Returns the wrong elements; iters[0], iters[1] get the iterations and warm-ups. */
static int64_t sweep_point(bench_t *b, const bench_method_t m[2], const bench_checker_t *chk,
                           int64_t bytes, int64_t moved, int64_t budget, int hi,
                           bench_stat_t w[2], int iters_out[2])
{
    int64_t auto_iters = budget / moved;
    int lo = b->opt.quick ? 3 : 5;
    hi = b->opt.quick ? 20 : hi;
    int iters = b->opt.iters > 0 ? b->opt.iters
                                 : (int)(auto_iters < lo   ? lo
                                         : auto_iters > hi ? hi
                                                           : auto_iters);
    int warmup = b->opt.warmup >= 0 ? b->opt.warmup : (bytes <= (1 << 20) ? 10 : 2);
    double *wall = calloc((size_t)(2 * iters), sizeof *wall);
    double *cpu = calloc((size_t)(2 * iters), sizeof *cpu);
    chk->prepare(chk->ctx);
    bench_run_interleaved(b, m, 2, warmup, iters, chk, wall, cpu);
    int64_t bad = bench_check_methods(b, m, 2, chk);
    for (int k = 0; k < 2; k++)
        w[k] = bench_stat_scale(bench_stat(wall + k * iters, iters), 1e6);
    free(wall);
    free(cpu);
    iters_out[0] = iters;
    iters_out[1] = warmup;
    return bad;
}

static void section_sweep(bench_t *b)
{
    sweep_t s = {.b = b};
    if (posix_memalign((void **)&s.buf, 64, (size_t)b->opt.max_bytes) != 0) {
        fprintf(stderr, "herd_bench: rank %d: cannot allocate %lld bytes for the sweep\n",
                b->rank, (long long)b->opt.max_bytes);
        MPI_Abort(MPI_COMM_WORLD, 6);
    }
    memset(s.buf, 0, (size_t)b->opt.max_bytes);
    double busf = b->size > 1 ? 2.0 * (b->size - 1) / b->size : 0.0;
    FILE *csv = NULL;
    if (b->rank == 0 && b->opt.csv != NULL) {
        csv = fopen(b->opt.csv, "w");
        if (csv == NULL)
            fprintf(stderr, "herd_bench: cannot write %s\n", b->opt.csv);
        else
            fprintf(csv, "bytes,iters,herd_us_median,herd_us_min,herd_us_max,herd_algbw_GBps,"
                         "herd_busbw_GBps,mpi_us_median,mpi_us_min,mpi_us_max,mpi_algbw_GBps,"
                         "mpi_busbw_GBps,herd_over_mpi\n");
    }
    const char *op = b->opt.sweep_op == HERD_SUM ? "sum" : "average";
    bench_text(b,
               "\n== bandwidth sweep: one float32 tensor, %s, herd vs MPI_Allreduce%s; "
               "interleaved; GB/s from the median time; busbw = algbw * 2(n-1)/n = %.3f\n",
               op, b->opt.sweep_op == HERD_AVERAGE ? " + divide" : "", busf);
    bench_text(b, "   %9s %6s | %-38s %7s %7s | %-38s %7s %7s | %7s\n", "bytes", "iters",
               "herd us: median [min - max]", "algbw", "busbw", "MPI us: median [min - max]",
               "algbw", "busbw", "herd/MPI");
    bench_json_begin(b, "sweep");
    bench_json_str(b, "op", op);
    bench_json_num(b, "busbw_factor", busf);
    bench_json_array(b, "sizes");
    int64_t bad = 0;
    for (int64_t bytes = b->opt.min_bytes; bytes <= b->opt.max_bytes;
         bytes *= b->opt.sweep_factor) {
        s.count = bytes / (int64_t)sizeof(float);
        snprintf(s.name, sizeof s.name, "sweep.%lld", (long long)bytes);
        const bench_method_t m[2] = {{"herd", "herd", sweep_herd, &s},
                                     {"mpi", "MPI_Allreduce", sweep_mpi, &s}};
        const bench_checker_t chk = {sweep_prepare, sweep_verify, &s};
        bench_stat_t w[2];
        int runs[2];
        bad += sweep_point(b, m, &chk, bytes, bytes, INT64_C(512) << 20, 500, w, runs);
        int iters = runs[0], warmup = runs[1];
        double alg[2], bus[2];
        for (int k = 0; k < 2; k++) {
            alg[k] = (double)bytes / w[k].median / 1e3; /* bytes/us -> GB/s */
            bus[k] = alg[k] * busf;
        }
        char sz[32];
        bench_text(b, "   %9s %6d | %11.2f [%10.2f - %10.2f] %7.2f %7.2f | %11.2f [%10.2f - "
                      "%10.2f] %7.2f %7.2f | %7.2f\n",
                   bench_fmt_bytes(bytes, sz, sizeof sz), iters, w[0].median, w[0].min, w[0].max,
                   alg[0], bus[0], w[1].median, w[1].min, w[1].max, alg[1], bus[1],
                   w[0].median / w[1].median);
        if (csv != NULL)
            fprintf(csv, "%lld,%d,%.3f,%.3f,%.3f,%.4f,%.4f,%.3f,%.3f,%.3f,%.4f,%.4f,%.4f\n",
                    (long long)bytes, iters, w[0].median, w[0].min, w[0].max, alg[0], bus[0],
                    w[1].median, w[1].min, w[1].max, alg[1], bus[1], w[0].median / w[1].median);
        bench_json_begin(b, NULL);
        bench_json_int(b, "bytes", (long long)bytes);
        bench_json_int(b, "iters", iters);
        bench_json_int(b, "warmup", warmup);
        for (int k = 0; k < 2; k++) {
            bench_json_begin(b, m[k].key);
            bench_json_stat(b, "us", w[k]);
            bench_json_num(b, "algbw_GBps", alg[k]);
            bench_json_num(b, "busbw_GBps", bus[k]);
            bench_json_end(b);
        }
        bench_json_num(b, "herd_over_mpi", w[0].median / w[1].median);
        bench_json_end(b);
        if (bytes > INT64_MAX / b->opt.sweep_factor)
            break;
    }
    bench_json_array_end(b);
    bench_json_int(b, "wrong", (long long)bad);
    bench_json_end(b);
    if (csv != NULL) {
        fclose(csv);
        bench_text(b, "   CSV written to %s (plot: gnuplot -e \"csv='%s'; png='sweep.png'\" "
                      "bench/plot.gp)\n",
                   b->opt.csv, b->opt.csv);
    }
    free(s.buf);
}

/* ---- broadcast, allgather and reducescatter sweeps ---------------------------------------------
 * herd_broadcast vs MPI_Bcast (root 0), herd_allgather vs MPI_Allgather and herd_reducescatter
 * (sum) vs MPI_Reduce_scatter_block on one float32 tensor per step, interleaved, sizes as the
 * allreduce sweep. Sizes are the tensor (broadcast), what one rank contributes (allgather) or
 * holds before the scatter (reducescatter). busbw uses NCCL's factors: 1 for broadcast, (n-1)/n
 * of the gathered / reduced bytes for the others. */

enum { COLL_BCAST, COLL_GATHER, COLL_SCATTER };

typedef struct coll_sweep {
    bench_t *b;
    float *send, *recv;
    int64_t count; /* broadcast: the tensor; allgather: per rank; reducescatter: the whole input
                    * (a multiple of n) */
    int kind;
    char name[64];
} coll_sweep_t;

static void coll_prepare(void *ctx)
{
    coll_sweep_t *s = ctx;
    for (int64_t k = 0; k < s->count; k++) {
        if (s->kind == COLL_BCAST)
            s->recv[k] = s->b->rank == 0 ? bench_value(1, k) : -1.0f;
        else
            s->send[k] = bench_rank_value(1, k, s->b->rank, s->b->size);
    }
}

static int64_t coll_verify(void *ctx, const char *method)
{
    coll_sweep_t *s = ctx;
    int n = s->b->size, me = s->b->rank;
    int64_t bad = 0, total = s->kind == COLL_BCAST    ? s->count
                             : s->kind == COLL_GATHER ? s->count * n
                                                      : s->count / n;
    for (int64_t k = 0; k < total; k++) {
        float want = s->kind == COLL_BCAST ? bench_value(1, k)
                     : s->kind == COLL_GATHER
                         ? bench_rank_value(1, k % s->count, (int)(k / s->count), n)
                         : bench_value(1, me * total + k) * (float)n;
        if (s->recv[k] != want && bad++ == 0)
            fprintf(stderr,
                    "herd_bench: rank %d: WRONG RESULT: %s, method %s: element %lld is %.9g, "
                    "expected %.9g\n",
                    me, s->name, method, (long long)k, s->recv[k], want);
    }
    return bad;
}

static const char *const coll_herd_names[] = {"herd_broadcast", "herd_allgather",
                                              "herd_reducescatter"};
static const char *const coll_mpi_names[] = {"MPI_Bcast", "MPI_Allgather",
                                             "MPI_Reduce_scatter_block"};

static void coll_herd(void *arg)
{
    coll_sweep_t *s = arg;
    herd_handle_t h = 0;
    int rc = s->kind == COLL_BCAST
                 ? herd_broadcast(s->name, s->recv, s->count, HERD_FLOAT32, 0, HERD_DEVICE_CPU,
                                  &h)
             : s->kind == COLL_GATHER
                 ? herd_allgather(s->name, s->send, s->recv, s->count, HERD_FLOAT32,
                                  HERD_DEVICE_CPU, &h)
                 : herd_reducescatter(s->name, s->send, s->recv, s->count / s->b->size,
                                      HERD_FLOAT32, HERD_SUM, HERD_DEVICE_CPU, &h);
    bench_herd_check(rc, coll_herd_names[s->kind], s->name);
    bench_herd_wait(h, s->name, s->b->opt.wait_ms);
}

static void coll_mpi(void *arg)
{
    coll_sweep_t *s = arg;
    if (s->kind == COLL_BCAST)
        MPI_Bcast(s->recv, (int)s->count, MPI_FLOAT, 0, MPI_COMM_WORLD);
    else if (s->kind == COLL_GATHER)
        MPI_Allgather(s->send, (int)s->count, MPI_FLOAT, s->recv, (int)s->count, MPI_FLOAT,
                      MPI_COMM_WORLD);
    else
        MPI_Reduce_scatter_block(s->send, s->recv, (int)(s->count / s->b->size), MPI_FLOAT,
                                 MPI_SUM, MPI_COMM_WORLD);
}

static void section_collectives(bench_t *b)
{
    int n = b->size;
    int64_t max_bytes = b->opt.max_bytes / n > 0 ? b->opt.max_bytes / n : b->opt.max_bytes;
    coll_sweep_t s = {.b = b};
    size_t cap = (size_t)max_bytes * (size_t)n + 64;
    if (posix_memalign((void **)&s.send, 64, cap) != 0 ||
        posix_memalign((void **)&s.recv, 64, cap) != 0) {
        fprintf(stderr, "herd_bench: rank %d: cannot allocate the collectives sweep\n",
                b->rank);
        MPI_Abort(MPI_COMM_WORLD, 6);
    }
    memset(s.send, 0, cap);
    memset(s.recv, 0, cap);
    double busf = n > 1 ? (double)(n - 1) / n : 0.0;
    bench_json_begin(b, "collectives");
    int64_t bad = 0;
    static const char *const whats[] = {"broadcast", "allgather", "reducescatter"};
    static const char *const sizes[] = {"the tensor", "each rank's part", "each rank's input"};
    static const char *const over[] = {"broadcast", "gathered", "input"};
    for (int kind = COLL_BCAST; kind <= COLL_SCATTER; kind++) {
        s.kind = kind;
        const char *what = whats[kind];
        double f = kind == COLL_BCAST ? 1.0 : busf;
        bench_text(b,
                   "\n== %s sweep: one float32 tensor, herd vs %s; interleaved; bytes = %s; "
                   "busbw = algbw * %s, algbw over the %s bytes\n",
                   what, coll_mpi_names[kind], sizes[kind], kind == COLL_BCAST ? "1" : "(n-1)/n",
                   over[kind]);
        bench_text(b, "   %9s %6s | %-38s %7s | %-38s %7s | %7s\n", "bytes", "iters",
                   "herd us: median [min - max]", "busbw", "MPI us: median [min - max]",
                   "busbw", "herd/MPI");
        bench_json_array(b, what);
        for (int64_t bytes = b->opt.min_bytes; bytes <= max_bytes;
             bytes *= b->opt.sweep_factor) {
            s.count = bytes / (int64_t)sizeof(float);
            if (kind == COLL_SCATTER)
                s.count -= s.count % n;
            if (s.count == 0)
                continue;
            snprintf(s.name, sizeof s.name, "%s.%lld", what, (long long)bytes);
            int64_t moved = kind == COLL_GATHER ? bytes * n : bytes;
            const bench_method_t m[2] = {{"herd", "herd", coll_herd, &s},
                                         {"mpi", coll_mpi_names[kind], coll_mpi, &s}};
            const bench_checker_t chk = {coll_prepare, coll_verify, &s};
            bench_stat_t w[2];
            int runs[2];
            bad += sweep_point(b, m, &chk, bytes, moved, INT64_C(256) << 20, 300, w, runs);
            int iters = runs[0];
            double bus[2];
            for (int k = 0; k < 2; k++) {
                bus[k] = (double)moved / w[k].median / 1e3 * f;
            }
            char sz[32];
            bench_text(b, "   %9s %6d | %11.2f [%10.2f - %10.2f] %7.2f | %11.2f [%10.2f - "
                          "%10.2f] %7.2f | %7.2f\n",
                       bench_fmt_bytes(bytes, sz, sizeof sz), iters, w[0].median, w[0].min,
                       w[0].max, bus[0], w[1].median, w[1].min, w[1].max, bus[1],
                       w[0].median / w[1].median);
            bench_json_begin(b, NULL);
            bench_json_int(b, "bytes", (long long)bytes);
            bench_json_int(b, "iters", iters);
            for (int k = 0; k < 2; k++) {
                bench_json_begin(b, m[k].key);
                bench_json_stat(b, "us", w[k]);
                bench_json_num(b, "busbw_GBps", bus[k]);
                bench_json_end(b);
            }
            bench_json_num(b, "herd_over_mpi", w[0].median / w[1].median);
            bench_json_end(b);
            if (bytes > INT64_MAX / b->opt.sweep_factor)
                break;
        }
        bench_json_array_end(b);
    }
    bench_json_int(b, "wrong", (long long)bad);
    bench_json_end(b);
    free(s.send);
    free(s.recv);
}

/* ---- header -------------------------------------------------------------------------------- */

/* Settings that change results: HERD_* and the MCA parameters a user set (mpirun --mca ...). */
static int interesting_env(const char *e)
{
    static const char *const skip[] = {"OMPI_MCA_orte_", "OMPI_MCA_ess", "OMPI_MCA_pmix",
                                       "OMPI_MCA_shmem_", "OMPI_MCA_initial_wdir"};
    if (strncmp(e, "HERD_", 5) == 0)
        return 1;
    if (strncmp(e, "OMPI_MCA_", 9) != 0)
        return 0;
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (strncmp(e, skip[i], strlen(skip[i])) == 0)
            return 0;
    return 1;
}

static void print_header(bench_t *b, int provided)
{
    char lib[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(lib, &len);
    lib[strcspn(lib, ",\n")] = '\0';
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *alloc = !bench_alloc_compiled() ? "not built (sanitizer build)"
                        : !b->alloc_ok         ? "inactive (interposition failed)"
                        : b->alloc_herd        ? "active, libherd's own calls counted apart"
                                               : "active (libherd not located)";
    bench_text(b, "herd_bench: herd %s (ABI %d), %d ranks on %s (%ld cores), %s, %s\n",
               herd_version(), herd_abi_version(), b->size, host, cores, lib,
               provided == MPI_THREAD_MULTIPLE ? "MPI_THREAD_MULTIPLE" : "thread level < MULTIPLE");
    bench_text(b, "   settings:");
    for (char **e = environ; *e; e++)
        if (interesting_env(*e))
            bench_text(b, " %s", *e);
    bench_text(b,
               "\n   allocation counter: %s; result check: %s; herd_wait_handle timeout: %lld%s\n",
               alloc, b->opt.check_every ? "every iteration" : "once per method and size",
               (long long)b->opt.wait_ms, b->opt.wait_ms < 0 ? " (none)" : " ms");
    bench_text(b, "   times: max over ranks per iteration, each after a barrier; CPU = process "
                  "CPU time (all threads), max over ranks\n");

    bench_json_str(b, "bench", "herd_bench");
    bench_json_str(b, "herd_version", herd_version());
    bench_json_int(b, "abi", herd_abi_version());
    bench_json_int(b, "ranks", b->size);
    bench_json_str(b, "host", host);
    bench_json_int(b, "cores", cores);
    bench_json_str(b, "mpi_library", lib);
    bench_json_int(b, "mpi_thread_multiple", provided == MPI_THREAD_MULTIPLE);
    bench_json_str(b, "alloc_counter", alloc);
    bench_json_begin(b, "env");
    for (char **e = environ; *e; e++) {
        if (!interesting_env(*e))
            continue;
        const char *eq = strchr(*e, '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - *e) : 255, *e);
        bench_json_str(b, key, eq ? eq + 1 : "");
    }
    bench_json_end(b);
    bench_json_begin(b, "settings");
    bench_json_int(b, "quick", b->opt.quick);
    bench_json_int(b, "check_every", b->opt.check_every);
    bench_json_int(b, "iters", b->opt.iters);
    bench_json_int(b, "warmup", b->opt.warmup);
    bench_json_int(b, "steady_steps", b->opt.steady_steps);
    bench_json_int(b, "wait_ms", b->opt.wait_ms);
    bench_json_int(b, "idle_ms", b->opt.idle_ms);
    bench_json_int(b, "tiny_count", b->opt.tiny_count);
    bench_json_int(b, "min_bytes", (long long)b->opt.min_bytes);
    bench_json_int(b, "max_bytes", (long long)b->opt.max_bytes);
    bench_json_end(b);
}

/* ---- main ---------------------------------------------------------------------------------- */

/* Seconds since *t0 (rank 0's clock), printed; *t0 moves on. */
static double section_done(bench_t *b, double *t0)
{
    double now = bench_wall(), took = now - *t0;
    *t0 = now;
    bench_text(b, "   (section took %.1f s)\n", took);
    return took;
}

/* Does a shared library's malloc land in our counter? strdup is in libc.so. */
static int alloc_self_test(void)
{
    if (!bench_alloc_compiled())
        return 0;
    bench_alloc_t a0, a1;
    bench_alloc_read(&a0);
    char *p = strdup("herd");
    bench_alloc_read(&a1);
    free(p);
    return a1.allocs > a0.allocs;
}

int main(int argc, char **argv)
{
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "herd_bench: MPI_Init_thread failed\n");
        return 2;
    }
    bench_t b = {0};
    MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b.size);
    int prc = parse_options(&b.opt, argc, argv, b.rank);
    if (prc != 0) {
        MPI_Finalize();
        return prc > 0 ? 0 : 2;
    }
    if (provided < MPI_THREAD_MULTIPLE) {
        if (b.rank == 0)
            fprintf(stderr, "herd_bench: MPI gives only thread level %d; herd and the baselines "
                            "share MPI across threads and need MPI_THREAD_MULTIPLE\n",
                    provided);
        MPI_Finalize();
        return 2;
    }
    b.alloc_ok = alloc_self_test();
    b.alloc_herd = b.alloc_ok && bench_alloc_track_library("libherd");
    int counted_everywhere = 0;
    MPI_Allreduce(&b.alloc_herd, &counted_everywhere, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (b.opt.strict_allocs && !counted_everywhere) {
        if (b.rank == 0)
            fprintf(stderr, "herd_bench: --strict-allocs, but herd's own allocations cannot be "
                            "counted in this build (sanitizer, or libherd not found): skipped\n");
        MPI_Finalize();
        return 77; /* ctest: skipped */
    }
    bench_watchdog_start(b.opt.timeout_ms);

    /* Reference: this process's idle CPU with MPI alone, before herd starts its thread. */
    double *mpi_idle = calloc((size_t)b.size, sizeof(double));
    double *herd_idle = calloc((size_t)b.size, sizeof(double));
    double mpi_idle_allocs[2] = {0, 0}, herd_idle_allocs[2] = {0, 0};
    if (b.opt.sections & BENCH_SEC_IDLE)
        idle_cpu(&b, mpi_idle, mpi_idle_allocs);

    bench_herd_check(herd_init(), "herd_init", NULL);
    if (herd_size() != b.size || herd_rank() != b.rank) {
        fprintf(stderr, "herd_bench: herd sees rank %d of %d, MPI rank %d of %d\n", herd_rank(),
                herd_size(), b.rank, b.size);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    bench_json_begin(&b, NULL);
    print_header(&b, provided);

    double sec[6] = {NAN, NAN, NAN, NAN, NAN, NAN}; /* idle ... sweep, collectives */
    double t0 = bench_wall();
    if (b.opt.sections & BENCH_SEC_IDLE) {
        /* Warm herd up (threads started, names negotiated, buffers grown), then let it idle. */
        latency_t l = {.b = &b};
        lat_prepare(&l);
        for (int i = 0; i < 50; i++)
            lat_herd(&l);
        int64_t wrong = lat_verify(&l, "idle warm-up"), all_wrong = 0;
        MPI_Allreduce(&wrong, &all_wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        b.failures += (int)all_wrong;
        idle_cpu(&b, herd_idle, herd_idle_allocs);
        bench_text(&b, "\n== idle CPU: process CPU time while the main thread sleeps %d ms, "
                       "%% of one core\n", b.opt.idle_ms);
        print_idle(&b, "MPI only, before herd_init", mpi_idle, mpi_idle_allocs);
        print_idle(&b, "after herd_init + warm-up (coordinator idle)", herd_idle,
                   herd_idle_allocs);
        bench_json_begin(&b, "idle");
        bench_json_int(&b, "ms", b.opt.idle_ms);
        json_idle(&b, "mpi_only", mpi_idle, mpi_idle_allocs);
        json_idle(&b, "herd", herd_idle, herd_idle_allocs);
        bench_json_end(&b);
        sec[0] = section_done(&b, &t0);
    }
    if (b.opt.sections & BENCH_SEC_LATENCY) {
        section_latency(&b);
        sec[1] = section_done(&b, &t0);
    }
    if (b.opt.sections & BENCH_SEC_TINY) {
        section_tiny(&b);
        sec[2] = section_done(&b, &t0);
    }
    if (b.opt.sections & BENCH_SEC_WORKLOAD) {
        bench_section_memcpy(&b);
        bench_json_array(&b, "workloads");
        for (int i = 0; i < b.opt.nworkloads; i++)
            bench_section_workload(&b, b.opt.workloads[i]);
        bench_json_array_end(&b);
        sec[3] = section_done(&b, &t0);
    }
    if (b.opt.sections & BENCH_SEC_SWEEP) {
        section_sweep(&b);
        sec[4] = section_done(&b, &t0);
    }
    if (b.opt.sections & BENCH_SEC_COLLECTIVES) {
        section_collectives(&b);
        sec[5] = section_done(&b, &t0);
    }
    static const char *const sec_names[6] = {"idle",     "latency", "tiny",
                                             "workload", "sweep",   "collectives"};
    bench_json_begin(&b, "section_seconds");
    for (int i = 0; i < 6; i++)
        if (!isnan(sec[i]))
            bench_json_num(&b, sec_names[i], sec[i]);
    bench_json_end(&b);

    bench_herd_check(herd_shutdown(), "herd_shutdown", NULL);
    bench_watchdog_stop();
    bench_text(&b, "\nresult check: %s\n",
               b.failures ? "FAILED (wrong results, see stderr)" : "all results exact");
    MPI_Bcast(&b.herd_alloc_windows, 1, MPI_INT, 0, MPI_COMM_WORLD);
    int alloc_fail = b.opt.strict_allocs && b.herd_alloc_windows > 0;
    if (alloc_fail)
        bench_text(&b, "allocation check: FAILED (herd allocated in %d steady-state or idle "
                   "windows, see stderr)\n", b.herd_alloc_windows);
    bench_json_int(&b, "wrong", b.failures);
    bench_json_int(&b, "herd_alloc_windows", b.herd_alloc_windows);
    bench_json_str(&b, "result", b.failures || alloc_fail ? "fail" : "pass");
    bench_json_end(&b);
    free(mpi_idle);
    free(herd_idle);
    MPI_Finalize();
    return b.failures || alloc_fail ? 1 : 0;
}
