/* test_many.c - hundreds of tensors of mixed dtypes, ops, kinds and sizes, submitted in a
 * different random order on every rank and completed in yet another order, for several steps
 * with the same names (after the first step they travel as cached bits). Some handles are
 * waited, some polled to completion, some waited with short timeouts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "mpi_test.h"

enum { NTENSORS = 300, NSTEPS = 4 };

typedef struct tensor {
    char name[64];
    int broadcast, dtype, op, root, in_place;
    int64_t count;
    void *send, *recv, *orig;
    uint64_t salt;
    herd_handle_t handle;
} tensor_t;

static tensor_t tensors[NTENSORS];

/* Attributes from one seed, the same on every rank. */
static void make_tensors(void)
{
    mt_rng_t rng = {.state = 12345};
    for (int i = 0; i < NTENSORS; i++) {
        tensor_t *t = &tensors[i];
        memset(t, 0, sizeof *t);
        t->broadcast = mt_rng_range(&rng, 0, 5) == 0;
        t->dtype = (int)mt_rng_range(&rng, 0, MT_NUM_DTYPES - 1);
        t->op = t->broadcast ? MT_BCAST : (int)mt_rng_range(&rng, 0, MT_NUM_OPS - 1);
        t->root = (int)mt_rng_range(&rng, 0, mt_size - 1);
        t->in_place = t->broadcast || mt_rng_range(&rng, 0, 1) == 0;
        int64_t pick = mt_rng_range(&rng, 0, 99);
        if (pick < 5)
            t->count = 0;
        else if (pick < 15)
            t->count = 1;
        else if (pick < 60)
            t->count = mt_rng_range(&rng, 2, 64);
        else if (pick < 95)
            t->count = mt_rng_range(&rng, 65, 3000);
        else
            t->count = mt_large_count(t->dtype);
        snprintf(t->name, sizeof t->name, "many.%03d.%s.%s", i, mt_dtype_name(t->dtype),
                 mt_op_name(t->op));
        size_t bytes = (size_t)t->count * mt_dtype_size(t->dtype);
        t->send = mt_alloc(bytes);
        t->recv = t->in_place ? t->send : mt_alloc(bytes);
        t->orig = t->in_place ? NULL : mt_alloc(bytes);
    }
}

static void free_tensors(void)
{
    for (int i = 0; i < NTENSORS; i++) {
        if (!tensors[i].in_place) {
            free(tensors[i].recv);
            free(tensors[i].orig);
        }
        free(tensors[i].send);
    }
}

static void fill(tensor_t *t, int step, int index)
{
    t->salt = mt_mix((uint64_t)(step * 100000 + index));
    size_t bytes = (size_t)t->count * mt_dtype_size(t->dtype);
    if (t->broadcast) {
        if (mt_rank == t->root)
            mt_fill(t->dtype, MT_BCAST, mt_rank, t->salt, t->send, t->count);
        else
            memset(t->send, 0xa5, bytes);
        return;
    }
    mt_fill(t->dtype, t->op, mt_rank, t->salt, t->send, t->count);
    if (!t->in_place) {
        memset(t->recv, 0x5a, bytes);
        memcpy(t->orig, t->send, bytes);
    }
}

static void submit(tensor_t *t)
{
    int rc;
    t->handle = -1;
    if (t->broadcast)
        rc = herd_broadcast(t->name, t->send, t->count, t->dtype, t->root, HERD_DEVICE_CPU,
                            &t->handle);
    else
        rc = herd_push_pull(t->name, t->send, t->recv, t->count, t->dtype, t->op,
                            HERD_DEVICE_CPU, &t->handle);
    MT_CHECK_STATUS(rc, HERD_OK);
    MT_CHECK(t->handle > 0);
}

/* Completes a handle three ways, by `how`: wait, poll loop then wait, short-timeout waits. */
static int complete(tensor_t *t, int how)
{
    int rc;
    if (how == 0)
        return mt_wait(t->handle, t->name);
    if (how == 1) {
        rc = mt_poll_until_done(t->handle, t->name);
        /* poll never releases: it reports the same final status again, then wait releases. */
        MT_CHECK_STATUS(herd_poll_handle(t->handle), rc);
        MT_CHECK_STATUS(herd_wait_handle(t->handle, 0), rc);
        return rc;
    }
    while ((rc = herd_wait_handle(t->handle, 1)) == HERD_ERR_TIMEOUT)
        ;
    return rc;
}

static void check(tensor_t *t)
{
    if (t->broadcast) {
        MT_CHECK(mt_verify_broadcast(t->dtype, t->root, t->salt, t->recv, t->count, t->name) ==
                 0);
        return;
    }
    MT_CHECK(mt_verify_allreduce(t->dtype, t->op, mt_size, t->salt, t->recv, t->count,
                                 t->name) == 0);
    if (!t->in_place && t->count > 0)
        MT_CHECK(memcmp(t->send, t->orig, (size_t)t->count * mt_dtype_size(t->dtype)) == 0);
}

/* Each step: submit everything in a rank-specific order, then complete in another. */
static void test_batched_steps(void)
{
    make_tensors();
    int64_t order[NTENSORS];
    mt_rng_t rng = {.state = 7919 * (uint64_t)(mt_rank + 1)};
    for (int step = 0; step < NSTEPS; step++) {
        for (int i = 0; i < NTENSORS; i++) {
            fill(&tensors[i], step, i);
            order[i] = i;
        }
        mt_shuffle(&rng, order, NTENSORS);
        for (int i = 0; i < NTENSORS; i++)
            submit(&tensors[order[i]]);
        mt_shuffle(&rng, order, NTENSORS);
        for (int i = 0; i < NTENSORS; i++) {
            tensor_t *t = &tensors[order[i]];
            MT_CHECK_STATUS(complete(t, (int)((order[i] + step + mt_rank) % 3)), HERD_OK);
            check(t);
            MT_CHECK_STATUS(herd_wait_handle(t->handle, -1), HERD_ERR_NOT_FOUND);
        }
    }
    free_tensors();
}

/* Pipelined: complete step s of a tensor and at once resubmit it for step s + 1, while other
 * tensors of step s are still in flight; every rank walks the tensors in its own order. */
static void test_pipelined_steps(void)
{
    make_tensors();
    for (int i = 0; i < NTENSORS; i++)
        snprintf(tensors[i].name + strlen(tensors[i].name),
                 sizeof tensors[i].name - strlen(tensors[i].name), ".p");
    int64_t order[NTENSORS];
    mt_rng_t rng = {.state = 104729 * (uint64_t)(mt_rank + 1)};
    for (int i = 0; i < NTENSORS; i++) {
        order[i] = i;
        fill(&tensors[i], 0, i);
    }
    mt_shuffle(&rng, order, NTENSORS);
    for (int i = 0; i < NTENSORS; i++)
        submit(&tensors[order[i]]);
    for (int step = 0; step < NSTEPS; step++) {
        mt_shuffle(&rng, order, NTENSORS);
        for (int i = 0; i < NTENSORS; i++) {
            tensor_t *t = &tensors[order[i]];
            MT_CHECK_STATUS(complete(t, (int)((order[i] + mt_rank) % 3)), HERD_OK);
            check(t);
            if (step + 1 < NSTEPS) {
                fill(t, step + 1, (int)order[i]);
                submit(t);
            }
        }
    }
    free_tensors();
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"batched_steps", test_batched_steps},
        {"pipelined_steps", test_pipelined_steps},
    };
    return mt_main(argc, argv, "many_tensors", tests, sizeof tests / sizeof tests[0],
                   MT_HERD_OWNS_MPI);
}
