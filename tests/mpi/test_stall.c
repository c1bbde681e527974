/* test_stall.c - the stall inspector (registered with HERD_STALL_TIMEOUT_SECONDS=1): a tensor
 * some ranks submitted and others never did completes with HERD_ERR_STALLED on the ranks that
 * submitted it, with a message naming it, while other traffic goes on; herd stays usable and
 * the name works again once every rank submits it. With one rank nothing can stall. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herd.h"
#include "mpi_test.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double stall_timeout_s(void)
{
    const char *v = getenv("HERD_STALL_TIMEOUT_SECONDS");
    return v != NULL ? atof(v) : 300.0;
}

/* Every rank: submit `name` (int32 SUM of 16) and expect the exact result. */
static void all_ranks_ok(const char *name, uint64_t salt)
{
    int32_t x[16];
    mt_fill(HERD_INT32, HERD_SUM, mt_rank, salt, x, 16);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull(name, x, x, 16, HERD_INT32, HERD_SUM, HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, name), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_INT32, HERD_SUM, mt_size, salt, x, 16, name) == 0);
}

/* Where `submit_here`, submit `name` alone (other ranks never do) and expect it to time
 * out; meanwhile every rank keeps reducing other tensors. */
static void stall_on(const char *name, int submit_here)
{
    int32_t x[16];
    mt_fill(HERD_INT32, HERD_SUM, mt_rank, 99, x, 16);
    herd_handle_t h = 0;
    double t0 = now_s();
    if (submit_here)
        MT_CHECK_STATUS(herd_push_pull(name, x, x, 16, HERD_INT32, HERD_SUM, HERD_DEVICE_CPU,
                                       &h),
                        HERD_OK);
    /* Other work is not held up by the stalled tensor. */
    for (int i = 0; i < 10; i++) {
        char busy[48];
        snprintf(busy, sizeof busy, "%s.busy%d", name, i);
        all_ranks_ok(busy, (uint64_t)(500 + i));
    }
    if (submit_here) {
        /* No deadline: a timed wait could not tell its own timeout from the operation's. */
        int rc = herd_wait_handle(h, -1);
        double waited = now_s() - t0;
        MT_CHECK_STATUS(rc, HERD_ERR_STALLED);
        if (!mt_last_error_has(name))
            fprintf(stderr, "[rank %d] stall message does not name '%s': %s\n", mt_rank, name,
                    herd_last_error());
        MT_CHECK(mt_last_error_has(name));
        /* Not before the timeout, and not absurdly late. */
        double limit = stall_timeout_s();
        if (waited < limit * 0.9 || waited > limit + 20)
            fprintf(stderr, "[rank %d] '%s' timed out after %.2f s (timeout %.2f s)\n",
                    mt_rank, name, waited, limit);
        MT_CHECK(waited >= limit * 0.9);
        MT_CHECK(waited <= limit + 20);
        /* The final status released the handle. */
        MT_CHECK_STATUS(herd_wait_handle(h, 0), HERD_ERR_NOT_FOUND);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* A name never negotiated: rank 0 alone submits it. */
static void test_pending_name_times_out(void)
{
    if (mt_size < 2)
        return;
    stall_on("stall.name", mt_rank == 0);
    all_ranks_ok("stall.name", 1); /* the name is usable again */
    all_ranks_ok("stall.name", 2);
}

/* A cached name: every rank but the last submits it again. */
static void test_cached_name_times_out(void)
{
    if (mt_size < 2)
        return;
    all_ranks_ok("stall.cached", 3);
    all_ranks_ok("stall.cached", 4);
    stall_on("stall.cached", mt_rank != mt_size - 1);
    all_ranks_ok("stall.cached", 5);
    all_ranks_ok("stall.cached", 6);
}

/* herd.h: HERD_ERR_TIMEOUT from herd_wait_handle means "a wait's own timeout passed; the
 * handle stays valid" and "may be waited on again". An operation the stall inspector timed out
 * ends with HERD_ERR_STALLED instead (ABI 2): released, and a wait with a deadline longer than
 * the stall timeout can tell the two apart by the status alone. */
static void test_timed_wait_on_stalled_op(void)
{
    if (mt_size < 2)
        return;
    int32_t x[4] = {1, 2, 3, 4};
    herd_handle_t h = 0;
    if (mt_rank == 0) {
        MT_CHECK_STATUS(herd_push_pull("stall.timed", x, x, 4, HERD_INT32, HERD_SUM,
                                       HERD_DEVICE_CPU, &h),
                        HERD_OK);
        double t0 = now_s();
        int rc = herd_wait_handle(h, (int64_t)(stall_timeout_s() * 1000) + 10000);
        double waited = now_s() - t0;
        MT_CHECK_STATUS(rc, HERD_ERR_STALLED);
        /* The operation itself timed out (the stall inspector), long before the wait's own
         * deadline: that is a completion, which the wait releases, and its message says so.
         * (A wait's own timeout leaves the handle in progress: see the handles suite.) */
        MT_CHECK(waited < stall_timeout_s() + 5.0);
        MT_CHECK(strstr(herd_last_error(), "HERD_STALL_TIMEOUT_SECONDS") != NULL);
        MT_CHECK(strstr(herd_last_error(), "stall.timed") != NULL);
        MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_NOT_FOUND);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"pending_name_times_out", test_pending_name_times_out},
        {"cached_name_times_out", test_cached_name_times_out},
        {"timed_wait_on_stalled_op", test_timed_wait_on_stalled_op},
    };
    return mt_main(argc, argv, "stall", tests, sizeof tests / sizeof tests[0],
                   MT_HERD_OWNS_MPI);
}
