/* test_broadcast.c - herd_broadcast from every root, every dtype, counts 0, 1, 1027 and one past
 * the fusion threshold. Non-root buffers start as garbage; the root's buffer must come back
 * unchanged. Here the program initialises MPI itself (MPI_THREAD_MULTIPLE) before herd_init:
 * herd must use it, and herd_shutdown must leave it running. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "mpi_test.h"

enum { NSIZES = 4 };

typedef struct bcast_case {
    char name[96];
    int dtype, root;
    int64_t count;
    uint64_t salt;
    void *buf, *orig;
    herd_handle_t handle;
} bcast_case_t;

static void setup_case(bcast_case_t *c, int dtype, int root, int64_t count, uint64_t salt,
                       const char *tag)
{
    memset(c, 0, sizeof *c);
    c->dtype = dtype;
    c->root = root;
    c->count = count;
    c->salt = salt;
    snprintf(c->name, sizeof c->name, "bc.%s.root%d.%s.n%lld", tag, root, mt_dtype_name(dtype),
             (long long)count);
    if (count == 0)
        return; /* NULL is allowed with count 0 */
    size_t bytes = (size_t)count * mt_dtype_size(dtype);
    c->buf = mt_alloc(bytes);
    if (mt_rank == root) {
        mt_fill(dtype, MT_BCAST, root, salt, c->buf, count);
        c->orig = mt_alloc(bytes);
        memcpy(c->orig, c->buf, bytes);
    } else {
        memset(c->buf, 0xa5, bytes);
    }
}

static void submit_case(bcast_case_t *c)
{
    c->handle = -1;
    MT_CHECK_STATUS(herd_broadcast(c->name, c->buf, c->count, c->dtype, c->root,
                                   HERD_DEVICE_CPU, &c->handle),
                    HERD_OK);
    MT_CHECK(c->handle > 0);
}

static void finish_case(bcast_case_t *c)
{
    MT_CHECK_STATUS(mt_wait(c->handle, c->name), HERD_OK);
    MT_CHECK(mt_verify_broadcast(c->dtype, c->root, c->salt, c->buf, c->count, c->name) == 0);
    if (mt_rank == c->root && c->count > 0) {
        int same = memcmp(c->buf, c->orig, (size_t)c->count * mt_dtype_size(c->dtype)) == 0;
        if (!same)
            fprintf(stderr, "[rank %d] %s: the root's buffer was modified\n", mt_rank, c->name);
        MT_CHECK(same);
    }
    free(c->buf);
    free(c->orig);
}

/* Every root and dtype at once, waited in reverse order. */
static void test_every_root_at_once(void)
{
    int n = mt_size * MT_NUM_DTYPES * NSIZES;
    bcast_case_t *cases = calloc((size_t)n, sizeof *cases);
    int k = 0;
    for (int root = 0; root < mt_size; root++)
        for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++) {
            const int64_t sizes[NSIZES] = {0, 1, 1027, mt_large_count(dtype)};
            for (int s = 0; s < NSIZES; s++, k++)
                setup_case(&cases[k], dtype, root, sizes[s], mt_mix((uint64_t)(300 + k)),
                           "all");
        }
    for (int i = 0; i < n; i++)
        submit_case(&cases[i]);
    for (int i = n - 1; i >= 0; i--)
        finish_case(&cases[i]);
    free(cases);
}

/* One root at a time, one dtype at a time. */
static void test_each_root_in_turn(void)
{
    for (int root = 0; root < mt_size; root++) {
        for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++) {
            const int64_t sizes[NSIZES] = {0, 1, 1027, mt_large_count(dtype)};
            bcast_case_t cases[NSIZES];
            for (int s = 0; s < NSIZES; s++)
                setup_case(&cases[s], dtype, root, sizes[s],
                           mt_mix((uint64_t)(root * 1000 + dtype * 10 + s)), "turn");
            for (int s = 0; s < NSIZES; s++)
                submit_case(&cases[s]);
            for (int s = 0; s < NSIZES; s++)
                finish_case(&cases[s]);
        }
    }
}

/* The same names for several steps with new values (cached path); then one name whose root
 * changes every step on every rank alike (its attributes are negotiated again). */
static void test_repeat_cached(void)
{
    for (int step = 0; step < 4; step++) {
        bcast_case_t cases[MT_NUM_DTYPES];
        for (int d = 0; d < MT_NUM_DTYPES; d++)
            setup_case(&cases[d], d, mt_size - 1, 333, mt_mix((uint64_t)(step * 100 + d)),
                       "rep");
        for (int d = 0; d < MT_NUM_DTYPES; d++)
            submit_case(&cases[d]);
        for (int d = MT_NUM_DTYPES - 1; d >= 0; d--)
            finish_case(&cases[d]);
    }
    for (int step = 0; step < 6; step++) {
        bcast_case_t c;
        setup_case(&c, HERD_INT32, step % mt_size, 100, mt_mix((uint64_t)(9100 + step)), "");
        snprintf(c.name, sizeof c.name, "bc.reroot"); /* one name, a new root each step */
        submit_case(&c);
        finish_case(&c);
    }
}

/* A broadcast and allreduces of other names in flight together. */
static void test_mixed_with_allreduce(void)
{
    int root = mt_size - 1;
    bcast_case_t b;
    setup_case(&b, HERD_FLOAT32, root, 2048, mt_mix(4242), "mixed");
    float *x = mt_alloc(2048 * sizeof *x);
    mt_fill(HERD_FLOAT32, HERD_SUM, mt_rank, 4343, x, 2048);
    herd_handle_t h = 0;
    submit_case(&b);
    MT_CHECK_STATUS(herd_push_pull("bc.mixed.allreduce", x, x, 2048, HERD_FLOAT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "bc.mixed.allreduce"), HERD_OK);
    MT_CHECK(mt_verify_allreduce(HERD_FLOAT32, HERD_SUM, mt_size, 4343, x, 2048,
                                 "bc.mixed.allreduce") == 0);
    finish_case(&b);
    free(x);
}

/* herd_shutdown leaves the program's MPI running; herd can then start again on it. */
static void test_shutdown_keeps_user_mpi(void)
{
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    int finalized = 1, initialized = 0;
    MPI_Finalized(&finalized);
    MPI_Initialized(&initialized);
    MT_CHECK(finalized == 0);
    MT_CHECK(initialized == 1);
    MT_CHECK(herd_initialized() == 0);
    MT_CHECK(herd_rank() == -1);
    MT_CHECK(herd_size() == -1);
    /* The program's own MPI still works. */
    int one = 1, sum = 0;
    MT_CHECK(MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS);
    MT_CHECK(sum == mt_size);
    /* Start again on the same MPI, and broadcast once more. */
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    MT_CHECK(herd_rank() == mt_rank && herd_size() == mt_size);
    bcast_case_t c;
    setup_case(&c, HERD_INT64, 0, 1027, mt_mix(777), "again");
    submit_case(&c);
    finish_case(&c);
    /* mt_main shuts herd down again and checks MPI is still initialised afterwards. */
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"every_root_at_once", test_every_root_at_once},
        {"each_root_in_turn", test_each_root_in_turn},
        {"repeat_cached", test_repeat_cached},
        {"mixed_with_allreduce", test_mixed_with_allreduce},
        {"shutdown_keeps_user_mpi", test_shutdown_keeps_user_mpi},
    };
    return mt_main(argc, argv, "broadcast", tests, sizeof tests / sizeof tests[0],
                   MT_USER_MPI);
}
