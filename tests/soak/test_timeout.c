/* test_timeout.c - timeouts that must hold when a peer stops answering (docs/operations.md,
 * "Waits that never hang"). Needs at least 2 ranks (with 1 the tests pass without running).
 *
 * wait_*: while every rank is quiet, rank 0 stops rank 1 (SIGSTOP), submits a tensor and waits
 * on it with a 300 ms deadline. The round rank 0 starts cannot finish (rank 1's coordinator is
 * frozen), so whoever runs it is stuck inside MPI; the wait must still return HERD_ERR_TIMEOUT
 * in under 500 ms, with the handle valid. Then rank 1 is resumed, the other ranks submit the
 * tensor and it completes everywhere with the exact result. A resumer thread sends SIGCONT
 * after 3 s whatever happens, so a wait that does get stuck fails the test instead of hanging.
 * Needs the ranks on one host (else the wait_* tests say so and pass without running).
 *   - wait_does_not_drive: the wait begins right after the submission, before the coordinator
 *     thread takes it: a wait with a deadline must not run the round itself.
 *   - wait_while_coordinator_stuck: the wait begins 100 ms after the submission, when the
 *     coordinator thread is stuck in the round, holding the progress lock.
 *
 * shutdown_timeout (last: it leaves herd unusable in this process): with
 * HERD_SHUTDOWN_TIMEOUT_SECONDS=1, rank 0 shuts down while the other ranks do not call
 * herd_shutdown for 5 s. Rank 0's herd_shutdown must return HERD_ERR_TIMEOUT after 1 s (well
 * before 2 s), with the documented message, and herd cannot start again (HERD_ERR_INVALID_USAGE).
 * The others then shut down normally: rank 0's abandoned coordinator still answers their last
 * round, so every process ends with MPI_Finalize and the failures are summed as usual.
 */
#include <mpi.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "herd.h"
#include "mpi_test.h"

enum { WAIT_MS = 300, SLACK_MS = 200, RESUME_AFTER_MS = 3000, COUNT = 1000 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Every rank's pid, if all ranks share this host (else NULL: the signal tests cannot run). */
static pid_t *gather_pids(void)
{
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    char *hosts = malloc((size_t)mt_size * sizeof host);
    pid_t *pids = malloc((size_t)mt_size * sizeof *pids);
    int me = (int)getpid();
    int *all = malloc((size_t)mt_size * sizeof *all);
    MPI_Allgather(host, (int)sizeof host, MPI_CHAR, hosts, (int)sizeof host, MPI_CHAR,
                  MPI_COMM_WORLD);
    MPI_Allgather(&me, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD);
    int same = 1;
    for (int r = 0; r < mt_size; r++) {
        pids[r] = (pid_t)all[r];
        same = same && strcmp(hosts + (size_t)r * sizeof host, host) == 0;
    }
    free(hosts);
    free(all);
    if (!same) {
        if (mt_rank == 0)
            printf("\n  (skipped: the ranks are not on one host)\n");
        free(pids);
        return NULL;
    }
    return pids;
}

/* The state letter of /proc/<pid>/stat ('T' = stopped), or '?'. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close = strrchr(buf, ')');
    return close != NULL && close[1] == ' ' ? close[2] : '?';
}

static int wait_for_state(pid_t pid, char want, double seconds)
{
    double end = now_s() + seconds;
    while (proc_state(pid) != want) {
        if (now_s() > end)
            return 0;
        sleep_ms(1);
    }
    return 1;
}

/* Sends SIGCONT to `pid` when told to, or after RESUME_AFTER_MS at the latest. */
typedef struct resumer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int now;
    pid_t pid;
    double resumed_at;
} resumer_t;

static void *resumer_main(void *arg)
{
    resumer_t *r = arg;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += RESUME_AFTER_MS / 1000;
    pthread_mutex_lock(&r->lock);
    while (!r->now)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &deadline) != 0)
            break;
    pthread_mutex_unlock(&r->lock);
    kill(r->pid, SIGCONT);
    r->resumed_at = now_s();
    return NULL;
}

static void resumer_start(resumer_t *r, pid_t pid)
{
    memset(r, 0, sizeof *r);
    r->pid = pid;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (pthread_create(&r->thread, NULL, resumer_main, r) != 0) {
        fprintf(stderr, "[rank %d] cannot start the resumer thread\n", mt_rank);
        abort();
    }
}

static void resumer_finish(resumer_t *r)
{
    pthread_mutex_lock(&r->lock);
    r->now = 1;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
}

/* Every rank: submit `name` (int64 SUM of COUNT), wait forever, check exactly. */
static void reduce_ok(const char *name, uint64_t salt)
{
    int64_t *x = mt_alloc(COUNT * sizeof *x);
    mt_fill(HERD_INT64, HERD_SUM, mt_rank, salt, x, COUNT);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull(name, x, x, COUNT, HERD_INT64, HERD_SUM, HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_INT64, HERD_SUM, mt_size, salt, x, COUNT, name) == 0);
    free(x);
}

/* Rank 0: submit `name`, give the round `settle_ms` to start, then wait with a deadline while
 * rank 1 is frozen; resume rank 1 (at once, or after RESUME_AFTER_MS if the wait got stuck). */
static void rank0_frozen_wait(const char *name, uint64_t salt, int64_t *x, pid_t peer,
                              long settle_ms)
{
    herd_handle_t h = 0;
    resumer_t res;
    resumer_start(&res, peer);
    MT_CHECK_STATUS(herd_push_pull(name, x, x, COUNT, HERD_INT64, HERD_SUM, HERD_DEVICE_CPU, &h),
                    HERD_OK);
    if (settle_ms > 0)
        sleep_ms(settle_ms);
    double t0 = now_s();
    int rc = herd_wait_handle(h, WAIT_MS);
    double waited = now_s() - t0;
    int poll_after = herd_poll_handle(h);
    resumer_finish(&res);
    double resumed_after = res.resumed_at - t0;
    double limit = (WAIT_MS + SLACK_MS) / 1000.0;
    printf("\n    rank 0: herd_wait_handle(h, %d) returned %s after %.3f s; rank 1 resumed "
           "%.3f s after the wait began ", WAIT_MS, herd_status_name(rc), waited, resumed_after);
    fflush(stdout);
    if (rc != HERD_ERR_TIMEOUT || waited >= limit || waited < WAIT_MS / 1000.0 - 0.005)
        fprintf(stderr, "[rank 0] %s: herd_wait_handle(h, %d) returned %s after %.3f s (want "
                "HERD_ERR_TIMEOUT after %.3f-%.3f s)\n", name, WAIT_MS, herd_status_name(rc),
                waited, WAIT_MS / 1000.0, limit);
    MT_CHECK_STATUS(rc, HERD_ERR_TIMEOUT);
    MT_CHECK(waited < limit);
    MT_CHECK(waited >= WAIT_MS / 1000.0 - 0.005);
    /* The wait's own timeout leaves the handle valid and the operation in progress. */
    MT_CHECK_STATUS(poll_after, HERD_INPROGRESS);
    /* It returned while rank 1 was still frozen. */
    MT_CHECK(resumed_after >= waited);
    /* The other ranks submit once rank 1 runs again; then it completes normally. */
    MPI_Barrier(MPI_COMM_WORLD);
    if (poll_after != HERD_ERR_NOT_FOUND)
        MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_INT64, HERD_SUM, mt_size, salt, x, COUNT, name) == 0);
}

/* One case, `repeats` times: every rank quiet; rank 0 freezes rank 1 and waits with a deadline
 * on a tensor that the other ranks submit only after rank 1 runs again. */
static void frozen_peer_case(const char *prefix, uint64_t salt, long settle_ms, int repeats)
{
    if (mt_size < 2)
        return;
    pid_t *pids = gather_pids();
    if (pids == NULL)
        return;
    /* Waits with no deadline: rank 0's main thread tends to drive its own rounds from here on,
     * so its next submission need not wake the coordinator thread (see herd_wait_handle). */
    for (int i = 0; i < 10; i++) {
        char warm[64];
        snprintf(warm, sizeof warm, "%s.warm%d", prefix, i);
        reduce_ok(warm, salt + 100 + (uint64_t)i);
    }
    int64_t *x = mt_alloc(COUNT * sizeof *x);
    for (int rep = 0; rep < repeats; rep++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%d", prefix, rep);
        uint64_t s = salt + 10 * (uint64_t)rep;
        mt_fill(HERD_INT64, HERD_SUM, mt_rank, s, x, COUNT);
        MPI_Barrier(MPI_COMM_WORLD);
        if (mt_rank == 0) {
            kill(pids[1], SIGSTOP);
            int stopped = wait_for_state(pids[1], 'T', 5.0);
            if (!stopped) {
                fprintf(stderr, "[rank 0] rank 1 (pid %d) did not stop: state %c\n",
                        (int)pids[1], proc_state(pids[1]));
                kill(pids[1], SIGCONT);
            }
            MT_CHECK(stopped);
            rank0_frozen_wait(name, s, x, pids[1], settle_ms);
        } else {
            /* Rank 1 is frozen somewhere in here until rank 0's timed wait is over. */
            MPI_Barrier(MPI_COMM_WORLD);
            herd_handle_t h = 0;
            MT_CHECK_STATUS(herd_push_pull(name, x, x, COUNT, HERD_INT64, HERD_SUM,
                                           HERD_DEVICE_CPU, &h),
                            HERD_OK);
            MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
            MT_CHECK(mt_verify_allreduce(HERD_INT64, HERD_SUM, mt_size, s, x, COUNT, name) == 0);
        }
    }
    free(x);
    free(pids);
    /* Everything works normally afterwards. */
    reduce_ok("timeout.after", salt + 7);
    reduce_ok("timeout.after", salt + 8);
}

/* The wait begins right after the submission: a wait with a deadline must not run the round
 * itself (it would be stuck in it). Three times, since the coordinator thread may take the
 * round first, and then a wait that would run it has nothing to run. */
static void test_wait_does_not_drive(void)
{
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    frozen_peer_case("timeout.drive", 1000, 0, 3);
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
}

/* The wait begins 100 ms after the submission: the coordinator thread has started the round
 * and is stuck inside MPI, holding the progress lock. */
static void test_wait_while_coordinator_stuck(void)
{
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    frozen_peer_case("timeout.stuck", 2000, 100, 1);
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
}

/* 1 while a thread of this process is named `name`. */
static int thread_named(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[64] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(comm, sizeof comm, f) != NULL)
            found = strncmp(comm, name, strlen(name)) == 0;
        fclose(f);
    }
    closedir(d);
    return found;
}

static void test_shutdown_timeout(void)
{
    if (mt_size < 2)
        return;
    setenv("HERD_SHUTDOWN_TIMEOUT_SECONDS", "1", 1);
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    reduce_ok("shutdown.before", 3000);
    MPI_Barrier(MPI_COMM_WORLD);
    if (mt_rank == 0) {
        double t0 = now_s();
        int rc = herd_shutdown();
        double took = now_s() - t0;
        char message[512];
        snprintf(message, sizeof message, "%s", herd_last_error());
        if (rc != HERD_ERR_TIMEOUT || took < 0.9 || took > 2.0)
            fprintf(stderr, "[rank 0] herd_shutdown returned %s after %.3f s (want "
                    "HERD_ERR_TIMEOUT after 1 s): %s\n", herd_status_name(rc), took, message);
        MT_CHECK_STATUS(rc, HERD_ERR_TIMEOUT);
        MT_CHECK(took >= 0.9);
        MT_CHECK(took <= 2.0);
        MT_CHECK(strstr(message, "HERD_SHUTDOWN_TIMEOUT_SECONDS") != NULL);
        MT_CHECK(herd_initialized() == 0);
        MT_CHECK(herd_rank() == -1);
        /* herd cannot be started again in this process. */
        MT_CHECK_STATUS(herd_init(), HERD_ERR_INVALID_USAGE);
        MT_CHECK(mt_last_error_has("cannot start again"));
        MT_CHECK(herd_initialized() == 0);
        int32_t v = 1;
        herd_handle_t h = 0;
        MT_CHECK_STATUS(herd_push_pull("shutdown.after", &v, &v, 1, HERD_INT32, HERD_SUM,
                                       HERD_DEVICE_CPU, &h),
                        HERD_ERR_INVALID_USAGE);
        MT_CHECK_STATUS(herd_shutdown(), HERD_OK); /* idempotent */
    } else {
        sleep_ms(5000);
        MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    }
    unsetenv("HERD_SHUTDOWN_TIMEOUT_SECONDS");
    /* Rank 0's abandoned coordinator took part in the others' last round; MPI may be finalized
     * once it has left MPI for good (it ends right after). */
    MPI_Barrier(MPI_COMM_WORLD);
    if (mt_rank == 0) {
        double end = now_s() + 10.0;
        while (thread_named("herd-coord") && now_s() < end)
            sleep_ms(10);
        if (thread_named("herd-coord"))
            fprintf(stderr, "[rank 0] the abandoned coordinator thread is still running\n");
    }
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"wait_does_not_drive", test_wait_does_not_drive},
        {"wait_while_coordinator_stuck", test_wait_while_coordinator_stuck},
        {"shutdown_timeout", test_shutdown_timeout},
    };
    return mt_main(argc, argv, "timeout", tests, sizeof tests / sizeof tests[0],
                   MT_USER_MPI_NO_INIT);
}
