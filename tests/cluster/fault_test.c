/* fault_test.c - a training loop that must notice when a peer disappears.
 *
 * Every step, every rank submits FAULT_TENSORS named int32 gradients, waits on each with a
 * finite timeout (FAULT_WAIT_MS) and checks every element against the exact sum; then it
 * "computes" for FAULT_STEP_MS. fault.sh cuts a host's cable or SIGKILLs a rank while this
 * runs, and reads what each rank wrote to FAULT_DIR/events.RANK:
 *
 *   <unix ms> start|ready|detect|shutdown|exit|signal|done <details>
 *
 *   ready     FAULT_WARMUP_STEPS steps passed: the fault may come now (the pid and host follow)
 *   detect    the first herd error: which call, which status, herd's message
 *   shutdown  herd_shutdown returned (after a detect it is expected to time out: the
 *             coordinator is blocked inside an MPI call with a peer that no longer answers)
 *   signal    a SIGTERM/SIGINT/SIGHUP arrived (mpirun killing the job); the process ends
 *   exit      the process is about to leave, and how (FAULT_EXIT)
 *   done      FAULT_STEPS steps passed without a fault (the control run)
 *   limit     no fault within FAULT_LIMIT_SECONDS (a fault that never came: the run fails)
 *   wrong     an element differs from the exact sum (the run fails)
 *
 * After a detect the process leaves as FAULT_EXIT says: "exit" (exit(3), the default: atexit
 * handlers and MPI's destructors run while herd's coordinator thread is still inside MPI),
 * "_exit" (_exit(3): nothing runs) or "abort" (MPI_Abort: OpenMPI's own way out, which also
 * makes mpirun end the whole job). MPI_Finalize is never called after a fault: it would be a
 * collective with a dead peer. herd_shutdown after a timeout leaves MPI alone for that reason.
 *
 * Exit status: 0 after a clean run, 3 after a detected fault, 1 on a wrong result or a bad
 * setting.
 */
#include <errno.h>
#include <fcntl.h>
#include <herd.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int events_fd = -1; /* FAULT_DIR/events.RANK, or stderr */
static int my_rank = -1;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One event line, written with one write() so lines of a dying process stay whole. */
static void event(const char *what, const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "%lld %s ", (long long)now_ms(), what);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (events_fd >= 0 && write(events_fd, line, (size_t)n) < 0)
        events_fd = -1;
    fprintf(stderr, "fault_test rank %d: %.*s", my_rank, n, line);
}

/* Async-signal-safe: only clock_gettime, write and _exit. */
static void on_signal(int sig)
{
    char line[64];
    char digits[24];
    int64_t t = now_ms();
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + t % 10);
        t /= 10;
    } while (t > 0 && nd < (int)sizeof digits);
    int n = 0;
    while (nd > 0)
        line[n++] = digits[--nd];
    const char *text = sig == SIGTERM ? " signal SIGTERM\n" : sig == SIGINT ? " signal SIGINT\n"
                                                                           : " signal SIGHUP\n";
    for (const char *p = text; *p; p++)
        line[n++] = *p;
    if (events_fd >= 0)
        (void)!write(events_fd, line, (size_t)n);
    _exit(128 + sig);
}

static long env_long(const char *name, long fallback, long lo, long hi)
{
    const char *text = getenv(name);
    if (text == NULL || *text == '\0')
        return fallback;
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "fault_test: %s='%s' is not an integer from %ld to %ld\n", name, text,
                lo, hi);
        exit(1);
    }
    return v;
}

static void leave(int status)
{
    const char *how = getenv("FAULT_EXIT");
    if (how == NULL || *how == '\0')
        how = "exit";
    event("exit", "status %d via %s", status, how);
    if (strcmp(how, "_exit") == 0)
        _exit(status);
    if (strcmp(how, "abort") == 0) {
        int initialized = 0, finalized = 0;
        MPI_Initialized(&initialized);
        MPI_Finalized(&finalized);
        if (initialized && !finalized)
            MPI_Abort(MPI_COMM_WORLD, status);
    }
    exit(status);
}

/* The first herd error: report it, try to shut herd down (bounded by
 * HERD_SHUTDOWN_TIMEOUT_SECONDS), and leave. */
static void fail(const char *call, const char *tensor, int step, int rc)
{
    event("detect", "step %d: %s('%s'): %s: %s", step, call, tensor, herd_status_name(rc),
          herd_last_error());
    int64_t t0 = now_ms();
    int src = herd_shutdown();
    event("shutdown", "%s after %lld ms: %s", herd_status_name(src), (long long)(now_ms() - t0),
          src == HERD_OK ? "" : herd_last_error());
    leave(3);
}

int main(void)
{
    long ntensors = env_long("FAULT_TENSORS", 8, 1, 1000);
    long count = env_long("FAULT_COUNT", 4096, 1, 1 << 24);
    long wait_ms = env_long("FAULT_WAIT_MS", 2000, -1, 3600000); /* -1: forever */
    long step_ms = env_long("FAULT_STEP_MS", 20, 0, 60000);
    long warmup = env_long("FAULT_WARMUP_STEPS", 10, 1, 1000000);
    long steps = env_long("FAULT_STEPS", 0, 0, 100000000); /* 0: until a fault or the limit */
    long limit_s = env_long("FAULT_LIMIT_SECONDS", 120, 1, 86400);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int rc = herd_init();
    if (rc != HERD_OK) {
        fprintf(stderr, "fault_test: herd_init: %s: %s\n", herd_status_name(rc),
                herd_last_error());
        return 1;
    }
    my_rank = herd_rank();
    int size = herd_size();
    const char *dir = getenv("FAULT_DIR");
    if (dir != NULL && *dir != '\0') {
        char path[4096];
        snprintf(path, sizeof path, "%s/events.%d", dir, my_rank);
        events_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (events_fd < 0) {
            fprintf(stderr, "fault_test: cannot open %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    char host[256] = "?";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    event("start", "pid %ld host %s ranks %d wait_ms %ld step_ms %ld tensors %ld count %ld",
          (long)getpid(), host, size, wait_ms, step_ms, ntensors, count);

    int32_t *send = malloc(sizeof(int32_t) * (size_t)(ntensors * count));
    int32_t *recv = malloc(sizeof(int32_t) * (size_t)(ntensors * count));
    herd_handle_t *handles = malloc(sizeof *handles * (size_t)ntensors);
    if (send == NULL || recv == NULL || handles == NULL) {
        fprintf(stderr, "fault_test: out of memory\n");
        return 1;
    }
    int64_t start = now_ms();
    int64_t sum_weights = (int64_t)size * (size + 1) / 2;
    char name[64];
    for (int step = 0; steps == 0 || step < steps; step++) {
        if (now_ms() - start > limit_s * 1000) {
            event("limit", "step %d: no fault within FAULT_LIMIT_SECONDS=%ld", step, limit_s);
            herd_shutdown();
            leave(1);
        }
        /* Values stay small: (rank+1) * v with v < 2^20, summed over a few ranks. */
        for (long i = 0; i < ntensors; i++)
            for (long k = 0; k < count; k++)
                send[i * count + k] = (int32_t)((my_rank + 1) * ((i * 7 + k + step) % 1048576));
        /* Ranks submit in different orders on purpose. */
        for (long j = 0; j < ntensors; j++) {
            long i = (j + my_rank) % ntensors;
            snprintf(name, sizeof name, "grad.%ld", i);
            rc = herd_push_pull(name, send + i * count, recv + i * count, count, HERD_INT32,
                                HERD_SUM, HERD_DEVICE_CPU, &handles[i]);
            if (rc != HERD_OK)
                fail("herd_push_pull", name, step, rc);
        }
        for (long i = 0; i < ntensors; i++) {
            snprintf(name, sizeof name, "grad.%ld", i);
            rc = herd_wait_handle(handles[i], wait_ms);
            if (rc != HERD_OK)
                fail("herd_wait_handle", name, step, rc);
        }
        for (long i = 0; i < ntensors; i++)
            for (long k = 0; k < count; k++) {
                int32_t want = (int32_t)(sum_weights * ((i * 7 + k + step) % 1048576));
                if (recv[i * count + k] != want) {
                    event("wrong", "step %d: grad.%ld[%ld] is %d, expected %d", step, i, k,
                          recv[i * count + k], want);
                    leave(1);
                }
            }
        if (step + 1 == warmup)
            event("ready", "pid %ld host %s step %d", (long)getpid(), host, step);
        if (step_ms > 0) {
            struct timespec ts = {step_ms / 1000, (step_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    rc = herd_shutdown();
    if (rc != HERD_OK) {
        event("detect", "herd_shutdown: %s: %s", herd_status_name(rc), herd_last_error());
        leave(3);
    }
    event("done", "%ld steps, every element right", steps);
    free(send);
    free(recv);
    free(handles);
    return 0;
}
