/* workload.c - memory bandwidth (the memory limit's B) and gradient-step replay of real models'
 * tensor lists: herd against hand-written plain-MPI strategies on the same buffers. */
#include <herd.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

#ifndef HERD_BENCH_SHARED_WORKLOADS
#define HERD_BENCH_SHARED_WORKLOADS ""
#endif
#ifndef HERD_BENCH_OWN_WORKLOADS
#define HERD_BENCH_OWN_WORKLOADS "workloads"
#endif

enum { CHUNK_BYTES = 4 << 20, BUCKET_BYTES = 1 << 20 };

/* ---- memory bandwidth ---------------------------------------------------------------------- */

static volatile unsigned char sink; /* keeps the copies observable */

void bench_section_memcpy(bench_t *b)
{
    size_t bytes = (size_t)b->opt.memcpy_bytes;
    int reps = b->opt.memcpy_reps;
    unsigned char *src = malloc(bytes), *dst = malloc(bytes);
    double *alone = calloc((size_t)reps, sizeof *alone);
    double *together = calloc((size_t)reps, sizeof *together);
    if (!src || !dst || !alone || !together) {
        fprintf(stderr, "herd_bench: rank %d: cannot allocate 2 x %zu bytes for memcpy\n",
                b->rank, bytes);
        MPI_Abort(MPI_COMM_WORLD, 6);
    }
    memset(src, 1, bytes); /* touch every page before timing */
    memset(dst, 2, bytes);
    /* Rank 0 alone (the others wait in the barrier): the machine's copy bandwidth, B. */
    MPI_Barrier(MPI_COMM_WORLD);
    if (b->rank == 0) {
        memcpy(dst, src, bytes); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double t0 = bench_wall();
            memcpy(dst, src, bytes);
            double t1 = bench_wall();
            sink ^= dst[(size_t)r * 4099 % bytes];
            alone[r] = (double)bytes / (t1 - t0);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    /* Every rank at once: what each gets while all of them copy (reported, not used). */
    for (int r = 0; r < reps; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = bench_wall();
        memcpy(dst, src, bytes);
        double t1 = bench_wall();
        sink ^= dst[(size_t)r * 4099 % bytes];
        together[r] = t1 - t0;
    }
    MPI_Reduce(b->rank == 0 ? MPI_IN_PLACE : together, together, reps, MPI_DOUBLE, MPI_MAX, 0,
               MPI_COMM_WORLD);
    bench_stat_t s = bench_stat(alone, reps);
    double bw[3] = {s.median, s.min, s.max};
    MPI_Bcast(bw, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    b->memcpy_bw = bw[0];
    b->memcpy_bw_min = bw[1];
    b->memcpy_bw_max = bw[2];
    for (int r = 0; r < reps; r++)
        together[r] = (double)bytes / together[r];
    bench_stat_t t = bench_stat(together, reps);
    char sz[32];
    bench_text(b,
               "\n== memory bandwidth: memcpy of %s, %d repetitions (bytes copied per second)\n"
               "   rank 0 alone (B, used for the memory limit): %.2f GB/s  [%.2f - %.2f]\n"
               "   all %d ranks at once, per rank:               %.2f GB/s  [%.2f - %.2f]\n",
               bench_fmt_bytes((int64_t)bytes, sz, sizeof sz), reps, s.median / 1e9,
               s.min / 1e9, s.max / 1e9, b->size, t.median / 1e9, t.min / 1e9, t.max / 1e9);
    bench_json_begin(b, "memcpy");
    bench_json_int(b, "bytes", (long long)bytes);
    bench_json_int(b, "reps", reps);
    bench_json_stat(b, "alone_GBps", bench_stat_scale(s, 1e-9));
    bench_json_stat(b, "all_ranks_GBps_per_rank", bench_stat_scale(t, 1e-9));
    bench_json_end(b);
    free(src);
    free(dst);
    free(alone);
    free(together);
}

/* ---- workload files ------------------------------------------------------------------------ */

typedef struct workload {
    bench_t *b;
    char model[64];
    char path[PATH_MAX];
    int nt;
    char **names;   /* "<model>/<tensor>", file (backward) order */
    int64_t *count; /* elements */
    int flat;       /* NAME:flat: every tensor a view of `flat`, in forward order */
    float **buf;    /* one aligned allocation per tensor, as a framework has, or views of flat */
    float *flat_buf;
    int64_t total;  /* elements in all tensors */
    float *packed;  /* baselines (b) and (c) */
    float *bucket;  /* baselines (d) and (f) */
    int *members;
    herd_handle_t *handles;
} workload_t;

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* --workload-dir, else ../shared/workloads (from the current directory, then from the source
 * tree), else the bench's own copy. */
static int find_workload(const bench_t *b, const char *name, char *path, size_t len)
{
    if (b->opt.workload_dir != NULL) {
        snprintf(path, len, "%s/%s.txt", b->opt.workload_dir, name);
        return is_file(path) ? 0 : -1;
    }
    const char *dirs[] = {"../shared/workloads", HERD_BENCH_SHARED_WORKLOADS,
                          HERD_BENCH_OWN_WORKLOADS};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (dirs[i][0] == '\0')
            continue;
        snprintf(path, len, "%s/%s.txt", dirs[i], name);
        if (is_file(path))
            return 0;
    }
    return -1;
}

static int load_workload(workload_t *w, const char *spec)
{
    char name[64];
    const char *colon = strchr(spec, ':');
    size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (colon != NULL && strcmp(colon, ":flat") != 0) {
        fprintf(stderr, "herd_bench: workload '%s': the only layout suffix is ':flat'\n", spec);
        return -1;
    }
    if (name_len >= sizeof name) {
        fprintf(stderr, "herd_bench: workload name '%s' is too long\n", spec);
        return -1;
    }
    memcpy(name, spec, name_len);
    name[name_len] = '\0';
    w->flat = colon != NULL;
    if (find_workload(w->b, name, w->path, sizeof w->path) != 0) {
        fprintf(stderr, "herd_bench: workload '%s' not found (tried %s)\n", name,
                w->b->opt.workload_dir ? w->path
                                       : "../shared/workloads, " HERD_BENCH_SHARED_WORKLOADS
                                         ", " HERD_BENCH_OWN_WORKLOADS);
        return -1;
    }
    FILE *f = fopen(w->path, "r");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    int cap_t = 0, lineno = 0, rc = 0;
    long long declared_params = -1;
    snprintf(w->model, sizeof w->model, "%s", name);
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#') {
            const char *m = strstr(line, "model=");
            if (lineno == 1 && m != NULL)
                sscanf(m, "model=%63s", w->model);
            const char *p = strstr(line, "total_params=");
            if (p != NULL)
                declared_params = atoll(p + 13);
            continue;
        }
        if (line[0] == '\0')
            continue;
        char *tab = strchr(line, '\t');
        char *end = NULL;
        long long numel = tab ? strtoll(tab + 1, &end, 10) : -1;
        if (tab == NULL || numel < 0 || *end != '\0' || tab == line) {
            fprintf(stderr, "herd_bench: %s:%d: expected name<TAB>numel\n", w->path, lineno);
            rc = -1;
            break;
        }
        *tab = '\0';
        if (w->nt == cap_t) {
            cap_t = cap_t ? cap_t * 2 : 256;
            char **names = realloc(w->names, sizeof *w->names * (size_t)cap_t);
            if (names != NULL)
                w->names = names;
            int64_t *count = realloc(w->count, sizeof *w->count * (size_t)cap_t);
            if (count != NULL)
                w->count = count;
            if (names == NULL || count == NULL) {
                rc = -1;
                break;
            }
        }
        size_t len = strlen(w->model) + 1 + strlen(line) + 1;
        w->names[w->nt] = malloc(len);
        if (w->names[w->nt] == NULL) {
            rc = -1;
            break;
        }
        snprintf(w->names[w->nt], len, "%s/%s", w->model, line);
        if (len - 1 > HERD_MAX_NAME_LEN) {
            fprintf(stderr, "herd_bench: %s:%d: name too long\n", w->path, lineno);
            rc = -1;
            break;
        }
        w->count[w->nt] = numel;
        w->total += numel;
        w->nt++;
    }
    free(line);
    fclose(f);
    if (rc == 0 && w->nt == 0) {
        fprintf(stderr, "herd_bench: %s: no tensors\n", w->path);
        rc = -1;
    }
    if (rc == 0 && declared_params >= 0 && declared_params != w->total)
        fprintf(stderr, "herd_bench: warning: %s says total_params=%lld, its lines sum to %lld\n",
                w->path, declared_params, (long long)w->total);
    return rc;
}

/* ---- data and checks ----------------------------------------------------------------------- */

static void prepare(void *ctx)
{
    workload_t *w = ctx;
    for (int i = 0; i < w->nt; i++)
        for (int64_t k = 0; k < w->count[i]; k++)
            w->buf[i][k] = bench_rank_value(i, k, w->b->rank, w->b->size);
}

static int64_t verify(void *ctx, const char *method)
{
    workload_t *w = ctx;
    int64_t bad = 0;
    for (int i = 0; i < w->nt; i++) {
        for (int64_t k = 0; k < w->count[i]; k++) {
            float want = bench_value(i, k);
            if (w->buf[i][k] == want)
                continue;
            if (bad++ == 0)
                fprintf(stderr,
                        "herd_bench: rank %d: WRONG RESULT: workload %s, method %s: tensor '%s' "
                        "element %lld is %.9g, expected %.9g\n",
                        w->b->rank, w->model, method, w->names[i], (long long)k, w->buf[i][k],
                        want);
        }
    }
    return bad;
}

/* ---- the steps ----------------------------------------------------------------------------- */

/* herd: every gradient submitted in file (backward) order, in place, then every handle waited. */
static void step_herd(void *arg)
{
    workload_t *w = arg;
    for (int i = 0; i < w->nt; i++)
        w->handles[i] = bench_herd_submit(w->names[i], w->buf[i], w->count[i], HERD_AVERAGE);
    for (int i = 0; i < w->nt; i++)
        bench_herd_wait(w->handles[i], w->names[i], w->b->opt.wait_ms);
}

/* (a) one MPI_Allreduce per tensor, in place. */
static void step_per_tensor(void *arg)
{
    workload_t *w = arg;
    for (int i = 0; i < w->nt; i++)
        bench_mpi_allreduce(w->buf[i], w->count[i], 1);
}

static void pack_all(workload_t *w)
{
    float *p = w->packed;
    for (int i = 0; i < w->nt; i++) {
        memcpy(p, w->buf[i], sizeof(float) * (size_t)w->count[i]);
        p += w->count[i];
    }
}

static void unpack_all(workload_t *w)
{
    const float *p = w->packed;
    for (int i = 0; i < w->nt; i++) {
        memcpy(w->buf[i], p, sizeof(float) * (size_t)w->count[i]);
        p += w->count[i];
    }
}

/* (b) copy everything into one buffer, one MPI_Allreduce, copy back. */
static void step_packed(void *arg)
{
    workload_t *w = arg;
    pack_all(w);
    bench_mpi_allreduce(w->packed, w->total, 1);
    unpack_all(w);
}

/* (c) the same buffer reduced in 4 MiB chunks, each divided while it is in cache. */
static void step_packed_chunks(void *arg)
{
    workload_t *w = arg;
    const int64_t chunk = CHUNK_BYTES / (int64_t)sizeof(float);
    pack_all(w);
    for (int64_t off = 0; off < w->total; off += chunk)
        bench_mpi_allreduce(w->packed + off, w->total - off < chunk ? w->total - off : chunk, 1);
    unpack_all(w);
}

static void flush_bucket(workload_t *w, int nmembers, int64_t elems)
{
    if (nmembers == 0)
        return;
    bench_mpi_allreduce(w->bucket, elems, 1);
    const float *p = w->bucket;
    for (int j = 0; j < nmembers; j++) {
        int i = w->members[j];
        memcpy(w->buf[i], p, sizeof(float) * (size_t)w->count[i]);
        p += w->count[i];
    }
}

/* (d)/(f): tensors under 1 MiB packed into 1 MiB buckets in file order; bigger ones reduced
 * alone in place, whole (d) or in 4 MiB pieces (f). */
static void buckets(workload_t *w, int64_t big_piece_elems)
{
    const int64_t cap = BUCKET_BYTES / (int64_t)sizeof(float);
    int nmembers = 0;
    int64_t fill = 0;
    for (int i = 0; i < w->nt; i++) {
        int64_t c = w->count[i];
        if (c >= cap) {
            for (int64_t off = 0; off < c; off += big_piece_elems)
                bench_mpi_allreduce(w->buf[i] + off,
                                    c - off < big_piece_elems ? c - off : big_piece_elems, 1);
            continue;
        }
        if (fill + c > cap) {
            flush_bucket(w, nmembers, fill);
            nmembers = 0;
            fill = 0;
        }
        memcpy(w->bucket + fill, w->buf[i], sizeof(float) * (size_t)c);
        w->members[nmembers++] = i;
        fill += c;
    }
    flush_bucket(w, nmembers, fill);
}

static void step_buckets(void *arg)
{
    buckets(arg, INT64_MAX);
}

static void step_buckets_pieces(void *arg)
{
    buckets(arg, CHUNK_BYTES / (int64_t)sizeof(float));
}

/* (g) flat layout only: the flat buffer reduced where it lies, one MPI_Allreduce per 4 MiB chunk,
 * each divided while it is in cache: what a framework that keeps gradients in one buffer
 * (DDP's gradient_as_bucket_view) would write by hand. */
static void step_flat_chunks(void *arg)
{
    workload_t *w = arg;
    const int64_t chunk = CHUNK_BYTES / (int64_t)sizeof(float);
    for (int64_t off = 0; off < w->total; off += chunk)
        bench_mpi_allreduce(w->flat_buf + off, w->total - off < chunk ? w->total - off : chunk,
                            1);
}

/* ---- the section --------------------------------------------------------------------------- */

static void free_workload(workload_t *w)
{
    for (int i = 0; i < w->nt; i++) {
        free(w->names[i]);
        if (w->buf && !w->flat)
            free(w->buf[i]);
    }
    free(w->flat_buf);
    free(w->names);
    free(w->count);
    free(w->buf);
    free(w->packed);
    free(w->bucket);
    free(w->members);
    free(w->handles);
}

static int alloc_workload(workload_t *w)
{
    w->buf = calloc((size_t)w->nt, sizeof *w->buf);
    w->members = calloc((size_t)w->nt, sizeof *w->members);
    w->handles = calloc((size_t)w->nt, sizeof *w->handles);
    w->bucket = malloc(BUCKET_BYTES);
    if (!w->buf || !w->members || !w->handles || !w->bucket)
        return -1;
    if (posix_memalign((void **)&w->packed, 64, sizeof(float) * (size_t)w->total) != 0)
        return -1;
    memset(w->packed, 0, sizeof(float) * (size_t)w->total);
    memset(w->bucket, 0, BUCKET_BYTES);
    if (w->flat) {
        /* Forward order (the reverse of the file's), as a framework lays out its parameters. */
        if (posix_memalign((void **)&w->flat_buf, 64, sizeof(float) * (size_t)w->total) != 0)
            return -1;
        int64_t off = 0;
        for (int i = w->nt - 1; i >= 0; i--) {
            w->buf[i] = w->flat_buf + off;
            off += w->count[i];
        }
        return 0;
    }
    for (int i = 0; i < w->nt; i++) {
        size_t bytes = sizeof(float) * (size_t)(w->count[i] ? w->count[i] : 1);
        if (posix_memalign((void **)&w->buf[i], 64, bytes) != 0)
            return -1;
    }
    return 0;
}

enum { M_HERD, M_A, M_B, M_C, M_D, M_F, M_G, NMETHODS };

void bench_section_workload(bench_t *b, const char *name)
{
    workload_t w = {.b = b};
    int ok = load_workload(&w, name) == 0 && alloc_workload(&w) == 0;
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        if (ok)
            fprintf(stderr, "herd_bench: rank %d: another rank could not load workload '%s'\n",
                    b->rank, name);
        free_workload(&w);
        b->failures++;
        return;
    }
    /* Forward order is the reverse of the file's: declaration order is herd's priority. */
    for (int i = w.nt - 1; i >= 0; i--) {
        int64_t key = 0;
        bench_herd_check(herd_declare_tensor(w.names[i], &key), "herd_declare_tensor",
                         w.names[i]);
    }
    prepare(&w);

    const bench_method_t m[NMETHODS] = {
        [M_HERD] = {"herd", "herd", step_herd, &w},
        [M_A] = {"a", "(a) MPI_Allreduce per tensor", step_per_tensor, &w},
        [M_B] = {"b", "(b) one packed buffer, copies in+out", step_packed, &w},
        [M_C] = {"c", "(c) packed, 4 MiB chunks, copies in+out", step_packed_chunks, &w},
        [M_D] = {"d", "(d) 1 MiB buckets, big alone in place", step_buckets, &w},
        [M_F] = {"f", "(f) 1 MiB buckets, big in 4 MiB pieces", step_buckets_pieces, &w},
        [M_G] = {"g", "(g) flat buffer, 4 MiB chunks in place", step_flat_chunks, &w},
    };
    const int nm = w.flat ? NMETHODS : M_G; /* (g) needs the flat layout */
    const bench_checker_t chk = {prepare, verify, &w};
    int iters = b->opt.iters > 0 ? b->opt.iters : (b->opt.quick ? 3 : 10);
    int warmup = b->opt.warmup >= 0 ? b->opt.warmup : (b->opt.quick ? 1 : 2);
    double *wall = calloc((size_t)(nm * iters), sizeof *wall);
    double *cpu = calloc((size_t)(nm * iters), sizeof *cpu);
    bench_run_interleaved(b, m, nm, warmup, iters, &chk, wall, cpu);
    int64_t bad = bench_check_methods(b, m, nm, &chk);
    bench_steady_t steady[NMETHODS];
    int64_t before[BENCH_MAX_COUNTERS], after[BENCH_MAX_COUNTERS];
    for (int k = 0; k < nm; k++) {
        if (k == M_HERD)
            bench_counters_snap(before);
        steady[k] = bench_steady(b, &m[k], b->opt.steady_steps);
        if (k == M_HERD)
            bench_counters_snap(after);
    }

    /* Figures (rank 0). */
    bench_stat_t ws[NMETHODS], cs[NMETHODS];
    int best = -1;
    for (int k = 0; k < nm; k++) {
        ws[k] = bench_stat_scale(bench_stat(wall + k * iters, iters), 1e3);
        cs[k] = bench_stat_scale(bench_stat(cpu + k * iters, iters), 1e3);
        if (k != M_HERD && (best < 0 || ws[k].median < ws[best].median))
            best = k;
    }
    double bytes = (double)w.total * sizeof(float);
    bench_stat_t limit = {NAN, NAN, NAN};
    if (b->memcpy_bw > 0)
        limit = (bench_stat_t){b->size * bytes / b->memcpy_bw * 1e3,
                               b->size * bytes / b->memcpy_bw_max * 1e3,
                               b->size * bytes / b->memcpy_bw_min * 1e3};
    double vs_best = ws[M_HERD].median / ws[best].median;
    double vs_limit = ws[M_HERD].median / limit.median;
    int alloc = b->alloc_ok;

    bench_text(b,
               "\n== workload %s%s: %d tensors, %lld float32 (%.1f MB), %d ranks; %d iterations "
               "after %d warm-up, interleaved\n   %s\n",
               w.model, w.flat ? " (flat: every gradient a view of one buffer)" : "", w.nt, (long long)w.total, bytes / 1e6, b->size, iters, warmup, w.path);
    bench_text(b, "   %-42s %27s %8s | %8s %8s %8s %11s\n", "", "wall ms: median [min - max]",
               "CPU ms", "b2b ms", "allocs", "by herd", "alloc bytes");
    for (int k = 0; k < nm; k++) {
        char al[32] = "n/a", ah[32] = "n/a", ab[32] = "n/a";
        if (alloc) {
            snprintf(al, sizeof al, "%.1f", steady[k].allocs);
            snprintf(ab, sizeof ab, "%.0f", steady[k].bytes);
        }
        if (alloc && b->alloc_herd)
            snprintf(ah, sizeof ah, "%.1f", steady[k].herd_allocs);
        bench_text(b, "   %-42s %9.2f [%7.2f - %7.2f] %8.2f | %8.2f %8s %8s %11s\n", m[k].label,
                   ws[k].median, ws[k].min, ws[k].max, cs[k].median, steady[k].wall * 1e3, al,
                   ah, ab);
    }
    bench_text(b, "   %-42s %9.2f [%7.2f - %7.2f]   (B = %.2f GB/s)\n", "(e) memory limit n*S/B",
               limit.median, limit.min, limit.max, b->memcpy_bw / 1e9);
    bench_text(b,
               "   herd / best baseline %s: %.2f    herd / memory limit: %.2f    "
               "best baseline / limit: %.2f%s\n",
               m[best].label, vs_best, vs_limit, ws[best].median / limit.median,
               bad ? "    RESULTS WRONG" : "");

    bench_json_begin(b, NULL);
    bench_json_str(b, "name", w.model);
    bench_json_str(b, "layout", w.flat ? "flat" : "separate");
    bench_json_str(b, "file", w.path);
    bench_json_int(b, "tensors", w.nt);
    bench_json_int(b, "elements", (long long)w.total);
    bench_json_int(b, "bytes", (long long)bytes);
    bench_json_int(b, "iters", iters);
    bench_json_int(b, "warmup", warmup);
    bench_json_array(b, "methods");
    for (int k = 0; k < nm; k++) {
        bench_json_begin(b, NULL);
        bench_json_str(b, "key", m[k].key);
        bench_json_str(b, "label", m[k].label);
        bench_json_stat(b, "wall_ms", ws[k]);
        bench_json_stat(b, "cpu_ms", cs[k]);
        bench_json_begin(b, "steady");
        bench_json_int(b, "steps", b->opt.steady_steps);
        bench_json_num(b, "wall_ms", steady[k].wall * 1e3);
        bench_json_num(b, "cpu_ms", steady[k].cpu * 1e3);
        bench_json_num(b, "allocs_per_step", alloc ? steady[k].allocs : NAN);
        bench_json_num(b, "alloc_bytes_per_step", alloc ? steady[k].bytes : NAN);
        bench_json_num(b, "herd_allocs_per_step",
                       alloc && b->alloc_herd ? steady[k].herd_allocs : NAN);
        bench_json_num(b, "herd_alloc_bytes_per_step",
                       alloc && b->alloc_herd ? steady[k].herd_bytes : NAN);
        bench_json_end(b);
        bench_json_end(b);
    }
    bench_json_array_end(b);
    bench_json_begin(b, "limit");
    bench_json_str(b, "formula", "n*S/B");
    bench_json_num(b, "B_GBps", b->memcpy_bw / 1e9);
    bench_json_stat(b, "ms", limit);
    bench_json_end(b);
    bench_counters_per(b, "herd back to back", "step", b->opt.steady_steps, before, after);
    bench_json_str(b, "best_baseline", m[best].key);
    bench_json_num(b, "herd_over_best_baseline", vs_best);
    bench_json_num(b, "herd_over_limit", vs_limit);
    bench_json_int(b, "wrong_elements", (long long)bad);
    bench_json_end(b);

    free(wall);
    free(cpu);
    free_workload(&w);
}
