/* test_initretry.c - herd_init refused for a bad HERD_* setting, then called again once the
 * setting is fixed, when herd (not the program) initialises MPI. herd.h: "A bad HERD_* value
 * fails with HERD_ERR_INVALID_ARG and names the variable"; STYLE L1: "a failed call creates
 * nothing to release". A refused herd_init must leave the process able to call herd_init again:
 * in particular it must not finalise an MPI it brought up for the failed attempt, since MPI
 * cannot be initialised twice in one process. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "mpi_test.h"

/* A value the parser accepts but the setting cannot be used: a trace file in a directory that
 * does not exist (every rank writes its own, so every rank fails alike). */
static void test_unwritable_timeline_then_retry(void)
{
    setenv("HERD_TIMELINE", "/nonexistent-herd-test-dir/%r/trace.json", 1);
    int rc = herd_init();
    MT_CHECK_STATUS(rc, HERD_ERR_INVALID_ARG);
    MT_CHECK(mt_last_error_has("HERD_TIMELINE"));
    MT_CHECK(herd_initialized() == 0);
    MT_CHECK(herd_rank() == -1);
    unsetenv("HERD_TIMELINE");
    if (rc == HERD_OK)
        herd_shutdown();

    rc = herd_init();
    if (rc != HERD_OK)
        fprintf(stderr, "[rank %d] herd_init after fixing HERD_TIMELINE: %s: %s\n", mt_rank,
                herd_status_name(rc), herd_last_error());
    MT_CHECK_STATUS(rc, HERD_OK);
    if (rc != HERD_OK)
        return;
    mt_rank = herd_rank();
    mt_size = herd_size();
    int64_t x[5];
    mt_fill(HERD_INT64, HERD_SUM, mt_rank, 1, x, 5);
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("retry", x, x, 5, HERD_INT64, HERD_SUM, HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "retry"), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_INT64, HERD_SUM, mt_size, 1, x, 5, "retry") == 0);
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"unwritable_timeline_then_retry", test_unwritable_timeline_then_retry},
    };
    return mt_main(argc, argv, "init_retry", tests, sizeof tests / sizeof tests[0],
                   MT_NOTHING);
}
