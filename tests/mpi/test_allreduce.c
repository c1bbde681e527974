/* test_allreduce.c - herd_push_pull: every dtype x every op x counts 0, 1, 1027 and one past
 * the fusion threshold, in place and out of place. Out of place, sendbuf must come back
 * unchanged and recvbuf must hold the exact result. herd initialises MPI here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "mpi_test.h"

enum { NSIZES = 4, MAX_OPS = MT_NUM_DTYPES * MT_NUM_OPS * NSIZES * 2 };

typedef struct op_case {
    char name[96];
    int dtype, op, in_place;
    int64_t count;
    uint64_t salt;
    void *send, *recv, *orig;
    herd_handle_t handle;
} op_case_t;

static void setup_case(op_case_t *c, int dtype, int op, int64_t count, int in_place,
                       uint64_t salt)
{
    memset(c, 0, sizeof *c);
    c->dtype = dtype;
    c->op = op;
    c->count = count;
    c->in_place = in_place;
    c->salt = salt;
    snprintf(c->name, sizeof c->name, "ar.%s.%s.n%lld.%s.%llx", mt_dtype_name(dtype),
             mt_op_name(op), (long long)count, in_place ? "inplace" : "outofplace",
             (unsigned long long)(salt & 0xffff));
    size_t bytes = (size_t)count * mt_dtype_size(dtype);
    if (count == 0 && in_place)
        return; /* count 0: NULL buffers are allowed */
    c->send = mt_alloc(bytes);
    mt_fill(dtype, op, mt_rank, salt, c->send, count);
    if (in_place) {
        c->recv = c->send;
    } else {
        c->recv = mt_alloc(bytes);
        memset(c->recv, 0x5a, bytes); /* garbage the result must overwrite */
        c->orig = mt_alloc(bytes);
        memcpy(c->orig, c->send, bytes);
    }
}

static void submit_case(op_case_t *c)
{
    c->handle = -1;
    int rc = herd_push_pull(c->name, c->send, c->recv, c->count, c->dtype, c->op,
                            HERD_DEVICE_CPU, &c->handle);
    MT_CHECK_STATUS(rc, HERD_OK);
    MT_CHECK(c->handle > 0);
}

static void finish_case(op_case_t *c)
{
    int rc = mt_wait(c->handle, c->name);
    MT_CHECK_STATUS(rc, HERD_OK);
    MT_CHECK(mt_verify_allreduce(c->dtype, c->op, mt_size, c->salt, c->recv, c->count,
                                 c->name) == 0);
    if (!c->in_place && c->count > 0) {
        int same = memcmp(c->send, c->orig, (size_t)c->count * mt_dtype_size(c->dtype)) == 0;
        if (!same)
            fprintf(stderr, "[rank %d] %s: sendbuf was modified\n", mt_rank, c->name);
        MT_CHECK(same);
    }
    /* The handle is released: a second wait is refused. */
    MT_CHECK_STATUS(herd_wait_handle(c->handle, 0), HERD_ERR_NOT_FOUND);
    free(c->send);
    if (!c->in_place) {
        free(c->recv);
        free(c->orig);
    }
}

/* All ops and sizes of one dtype submitted together, waited in reverse order. */
static void run_dtype(int dtype)
{
    const int64_t sizes[NSIZES] = {0, 1, 1027, mt_large_count(dtype)};
    op_case_t *cases = calloc(MAX_OPS, sizeof *cases);
    int n = 0;
    for (int op = 0; op < MT_NUM_OPS; op++)
        for (int s = 0; s < NSIZES; s++)
            for (int in_place = 0; in_place < 2; in_place++, n++)
                setup_case(&cases[n], dtype, op, sizes[s], in_place,
                           mt_mix((uint64_t)(dtype * 1000 + op * 100 + s * 10 + in_place)));
    for (int i = 0; i < n; i++)
        submit_case(&cases[i]);
    for (int i = n - 1; i >= 0; i--)
        finish_case(&cases[i]);
    free(cases);
}

static void test_uint8(void) { run_dtype(HERD_UINT8); }
static void test_int8(void) { run_dtype(HERD_INT8); }
static void test_int32(void) { run_dtype(HERD_INT32); }
static void test_int64(void) { run_dtype(HERD_INT64); }
static void test_float16(void) { run_dtype(HERD_FLOAT16); }
static void test_bfloat16(void) { run_dtype(HERD_BFLOAT16); }
static void test_float32(void) { run_dtype(HERD_FLOAT32); }
static void test_float64(void) { run_dtype(HERD_FLOAT64); }

/* One tensor at a time: each op is alone in its round, so small ones take the unfused path. */
static void test_one_at_a_time(void)
{
    const int64_t sizes[3] = {0, 1, 1027};
    for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++) {
        for (int op = 0; op < MT_NUM_OPS; op++) {
            for (int s = 0; s < 3; s++) {
                op_case_t c;
                setup_case(&c, dtype, op, sizes[s], (dtype + op + s) % 2,
                           mt_mix((uint64_t)(77000 + dtype * 100 + op * 10 + s)));
                submit_case(&c);
                finish_case(&c);
            }
        }
    }
}

/* Every dtype and op at once (40 fusion classes, more than the planner keeps open), submitted
 * in a different order on every rank. */
static void test_all_at_once(void)
{
    const int64_t sizes[3] = {1, 1027, 4099};
    int total = MT_NUM_DTYPES * MT_NUM_OPS * 3;
    op_case_t *cases = calloc((size_t)total, sizeof *cases);
    int64_t *order = calloc((size_t)total, sizeof *order);
    int n = 0;
    for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++)
        for (int op = 0; op < MT_NUM_OPS; op++)
            for (int s = 0; s < 3; s++, n++)
                setup_case(&cases[n], dtype, op, sizes[s], n % 2,
                           mt_mix((uint64_t)(99000 + n)));
    for (int i = 0; i < n; i++)
        order[i] = i;
    mt_rng_t rng = {.state = 1000 + (uint64_t)mt_rank};
    mt_shuffle(&rng, order, n);
    for (int i = 0; i < n; i++)
        submit_case(&cases[order[i]]);
    mt_shuffle(&rng, order, n);
    for (int i = 0; i < n; i++)
        finish_case(&cases[order[i]]);
    free(order);
    free(cases);
}

/* The same names again with new values: the cached (bit-vector) path gives fresh results. */
static void test_repeat_cached(void)
{
    for (int step = 0; step < 3; step++) {
        op_case_t cases[MT_NUM_DTYPES];
        for (int dtype = 0; dtype < MT_NUM_DTYPES; dtype++) {
            setup_case(&cases[dtype], dtype, HERD_SUM, 513, 0, 0);
            /* Same names every step, different values. */
            uint64_t salt = mt_mix((uint64_t)(5000 + step * 10 + dtype));
            cases[dtype].salt = salt;
            mt_fill(dtype, HERD_SUM, mt_rank, salt, cases[dtype].send, 513);
            memcpy(cases[dtype].orig, cases[dtype].send, 513 * mt_dtype_size(dtype));
        }
        for (int d = 0; d < MT_NUM_DTYPES; d++)
            submit_case(&cases[d]);
        for (int d = 0; d < MT_NUM_DTYPES; d++)
            finish_case(&cases[d]);
    }
}

static void test_identity(void)
{
    MT_CHECK(herd_initialized() == 1);
    MT_CHECK(herd_rank() == mt_rank);
    MT_CHECK(herd_size() == mt_size);
    /* The launcher knows the node-local layout (one host here, several in tests/cluster). */
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    MT_CHECK(herd_local_rank() == (lr ? atoi(lr) : mt_rank));
    MT_CHECK(herd_local_size() == (ls ? atoi(ls) : mt_size));
    MT_CHECK(herd_local_rank() >= 0 && herd_local_rank() < herd_local_size());
    for (int d = 0; d < MT_NUM_DTYPES; d++)
        MT_CHECK(herd_dtype_size(d) == (int)mt_dtype_size(d));
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"identity", test_identity},
        {"uint8", test_uint8},
        {"int8", test_int8},
        {"int32", test_int32},
        {"int64", test_int64},
        {"float16", test_float16},
        {"bfloat16", test_bfloat16},
        {"float32", test_float32},
        {"float64", test_float64},
        {"one_at_a_time", test_one_at_a_time},
        {"all_at_once_shuffled", test_all_at_once},
        {"repeat_cached", test_repeat_cached},
    };
    return mt_main(argc, argv, "allreduce", tests, sizeof tests / sizeof tests[0],
                   MT_HERD_OWNS_MPI);
}
