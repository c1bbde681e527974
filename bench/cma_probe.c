/* cma_probe.c - does reading a peer's buffers in place (Linux cross-memory attach) beat the
 * shared-memory plane's copy through a segment? A two-process allreduce (float32 sum) of one
 * tensor, three ways, alternating call by call so that every way sees the same machine state:
 *
 *   segment, regular stores: copy the peer's share into my segment region, reduce my share from
 *     my input and the peer's copy into my output and my region, copy the peer's reduced share
 *     out of its region (the plane's protocol, one chunk, no pipelining);
 *   segment, streaming stores: the same, the stores into the segment non-temporal;
 *   in place: reduce my share from my input and the peer's input read with process_vm_readv into
 *     a 256 KiB buffer that stays in cache, then read the peer's reduced share straight from its
 *     output into mine; the peer must not return before I have read it (one more wait).
 *
 * No MPI: fork() and an anonymous shared mapping for the counters, each process pinned to its own
 * core (cores 0 and 1, as mpirun's default binding does). Every result is checked exactly.
 * Usage: cma_probe MiB [iterations]. Prints, per way, the median and best time of rank 0's calls,
 * and the memory limit 2 S / B, B being a memcpy of S bytes by rank 0 alone. x86-64 only.
 */
#define _GNU_SOURCE
#include <emmintrin.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { WAYS = 3, BOUNCE_BYTES = 256 << 10 };
static const char *const way_name[WAYS] = {"segment, regular", "segment, streaming",
                                           "in place (process_vm_readv)"};

typedef struct {
    _Alignas(128) _Atomic int64_t v;
} line_t;

typedef struct {
    line_t ready[2], reduced[2], consumed[2];
    _Atomic(float *) in[2], out[2];
    _Atomic pid_t pid[2];
    _Atomic int failed; /* a process gave up: the other stops waiting */
} shared_t;

static shared_t *sh;
static char *segment; /* one region of `region_bytes` per process */
static size_t region_bytes;
static float bounce[BOUNCE_BYTES / sizeof(float)] __attribute__((aligned(64)));

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void wait_at_least(_Atomic int64_t *c, int64_t v)
{
    while (atomic_load_explicit(c, memory_order_acquire) < v) {
        if (atomic_load_explicit(&sh->failed, memory_order_relaxed))
            _exit(1);
        _mm_pause();
    }
}

static void raise_to(_Atomic int64_t *c, int64_t v)
{
    atomic_store_explicit(c, v, memory_order_release);
}

static void stream_copy(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i += 4)
        _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    _mm_sfence();
}

static void read_peer(pid_t pid, void *dst, const void *src, size_t bytes)
{
    struct iovec l = {dst, bytes}, r = {(void *)(uintptr_t)src, bytes};
    if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)bytes) {
        perror("cma_probe: process_vm_readv (refused by ptrace restrictions?)");
        atomic_store(&sh->failed, 1);
        _exit(1);
    }
}

/* One allreduce of n floats (n a multiple of 8) from `in` into `out`, call number `seq`. */
static void allreduce(int me, int way, const float *in, float *out, size_t n, int64_t seq)
{
    int peer = 1 - me;
    size_t half = n / 2, mine = (size_t)me * half, theirs = (size_t)peer * half;
    if (way < 2) {
        float *my_region = (float *)(segment + (size_t)me * region_bytes);
        const float *peer_region = (const float *)(segment + (size_t)peer * region_bytes);
        wait_at_least(&sh->consumed[peer].v, seq - 1); /* my region's last contents were read */
        if (way == 1)
            stream_copy(my_region + theirs, in + theirs, half);
        else
            memcpy(my_region + theirs, in + theirs, half * sizeof(float));
        raise_to(&sh->ready[me].v, seq);
        wait_at_least(&sh->ready[peer].v, seq);
        if (way == 1) {
            for (size_t i = mine; i < mine + half; i += 4) {
                __m128 v = _mm_add_ps(_mm_loadu_ps(in + i), _mm_loadu_ps(peer_region + i));
                _mm_storeu_ps(out + i, v);
                _mm_stream_ps(my_region + i, v);
            }
            _mm_sfence();
        } else {
            for (size_t i = mine; i < mine + half; i++)
                my_region[i] = out[i] = in[i] + peer_region[i];
        }
        raise_to(&sh->reduced[me].v, seq);
        wait_at_least(&sh->reduced[peer].v, seq);
        memcpy(out + theirs, peer_region + theirs, half * sizeof(float));
        raise_to(&sh->consumed[me].v, seq);
        return;
    }
    atomic_store(&sh->in[me], (float *)in);
    atomic_store(&sh->out[me], out);
    raise_to(&sh->ready[me].v, seq);
    wait_at_least(&sh->ready[peer].v, seq);
    const float *peer_in = atomic_load(&sh->in[peer]);
    const float *peer_out = atomic_load(&sh->out[peer]);
    size_t step = BOUNCE_BYTES / sizeof(float);
    for (size_t off = 0; off < half; off += step) {
        size_t c = half - off < step ? half - off : step;
        read_peer(sh->pid[peer], bounce, peer_in + mine + off, c * sizeof(float));
        for (size_t i = 0; i < c; i++)
            out[mine + off + i] = in[mine + off + i] + bounce[i];
    }
    raise_to(&sh->reduced[me].v, seq);
    wait_at_least(&sh->reduced[peer].v, seq);
    read_peer(sh->pid[peer], out + theirs, peer_out + theirs, half * sizeof(float));
    raise_to(&sh->consumed[me].v, seq);
    wait_at_least(&sh->consumed[peer].v, seq); /* the peer has read my output */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float value(int rank, size_t i)
{
    return (float)((i * 7 + (size_t)rank) % 1000);
}

int main(int argc, char **argv)
{
    double mib = argc >= 2 ? atof(argv[1]) : 0;
    if (!isfinite(mib) || mib <= 0 || mib > 16384) {
        fprintf(stderr, "usage: cma_probe MiB [iterations]   (0 < MiB <= 16384)\n");
        return 2;
    }
    size_t bytes = ((size_t)(mib * 1048576.0) + 31) & ~(size_t)31;
    int iters = argc > 2 ? atoi(argv[2]) : 50;
    if (iters < 3)
        iters = 3;
    size_t n = bytes / sizeof(float);
    region_bytes = (bytes + 4095) & ~(size_t)4095;
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    segment = mmap(NULL, 2 * region_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (sh == MAP_FAILED || segment == MAP_FAILED) {
        perror("cma_probe: mmap");
        return 1;
    }
    memset(segment, 0, 2 * region_bytes);
    /* Under Yama's ptrace_scope 1 only a tracer may read a process: let the child read us. */
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        perror("cma_probe: fork");
        return 1;
    }
    int me = child == 0 ? 1 : 0;
    if (me == 1 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
        _exit(1); /* no orphan left spinning */
    sh->pid[me] = getpid();
    cpu_set_t cores;
    CPU_ZERO(&cores);
    CPU_SET(me, &cores);
    sched_setaffinity(0, sizeof cores, &cores); /* best effort */
    float *in = aligned_alloc(4096, region_bytes), *out = aligned_alloc(4096, region_bytes);
    float *fresh = aligned_alloc(4096, region_bytes);
    double *t = calloc((size_t)WAYS * (size_t)iters, sizeof *t);
    if (in == NULL || out == NULL || fresh == NULL || t == NULL) {
        fprintf(stderr, "cma_probe: out of memory\n");
        atomic_store(&sh->failed, 1);
        _exit(1);
    }
    for (size_t i = 0; i < n; i++)
        fresh[i] = value(me, i);
    memset(out, 0, bytes);
    memcpy(out, fresh, bytes); /* touch, then time B */
    double t0 = now();
    memcpy(out, fresh, bytes);
    double memcpy_s = now() - t0;
    while (atomic_load(&sh->pid[1 - me]) == 0) { /* both pids are known */
        if (atomic_load(&sh->failed))
            _exit(1);
        _mm_pause();
    }
    int64_t seq = 0, wrong = 0;
    for (int it = 0; it < iters + 2; it++)
        for (int way = 0; way < WAYS; way++) {
            memcpy(in, fresh, bytes); /* a fresh gradient, as a step writes one */
            memset(out, 0xff, bytes); /* NaN: a way that leaves any of it unwritten fails */
            double s = now();
            allreduce(me, way, in, out, n, ++seq);
            s = now() - s;
            if (it >= 2)
                t[way * iters + (it - 2)] = s;
            for (size_t i = 0; i < n; i++)
                wrong += out[i] != value(0, i) + value(1, i);
        }
    if (me == 1)
        _exit(wrong != 0);
    int status = 0;
    waitpid(child, &status, 0);
    printf("%.1f MiB, %d calls per way: memcpy %.2f GB/s, limit 2 S / B %.1f us\n",
           (double)bytes / 1048576.0, iters, (double)bytes / memcpy_s / 1e9, 2e6 * memcpy_s);
    for (int way = 0; way < WAYS; way++) {
        qsort(t + way * iters, (size_t)iters, sizeof *t, cmp_double);
        printf("  %-28s median %9.1f us   best %9.1f us\n", way_name[way],
               1e6 * t[way * iters + iters / 2], 1e6 * t[way * iters]);
    }
    if (wrong != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "cma_probe: wrong results\n");
        return 1;
    }
    return 0;
}
