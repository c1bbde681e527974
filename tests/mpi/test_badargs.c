/* test_badargs.c - every refused call and its exact status: bad arguments (a table), handles
 * that are not live, calls at the wrong time (before herd_init, twice, after herd_shutdown) and
 * a full handle table. After each refused call, *handle_out is 0 and herd_last_error() says
 * why. Bad calls are local, but the collective calls in between are the same on every rank.
 *
 * The program initialises MPI itself; the tests call herd_init/herd_shutdown (the tests depend
 * on running in order). Registered with HERD_MAX_HANDLES=16 for the table-full test. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "mpi_test.h"

/* ---- helpers --------------------------------------------------------------------------------- */

/* CUDA devices this process sees, asked of the CUDA runtime only if libherd brought one in (a
 * build with GPU support); 0 otherwise. Decides what a CUDA ordinal with host buffers gets:
 * HERD_ERR_NOT_SUPPORTED without GPU support or without a visible device, else
 * HERD_ERR_INVALID_ARG (a host pointer where device memory was promised). */
static int visible_gpus(void)
{
    void *sym = dlsym(RTLD_DEFAULT, "cudaGetDeviceCount");
    if (sym == NULL)
        return 0;
    int (*count_fn)(int *);
    memcpy(&count_fn, &sym, sizeof count_fn);
    int n = 0;
    return count_fn(&n) == 0 ? n : 0;
}

/* A refused call: exact status, *handle_out reset to 0, a message (naming `name` if given). */
static void check_refused(int rc, int want, herd_handle_t handle, const char *name,
                          const char *what, int line)
{
    if (rc != want || handle != 0 || herd_last_error()[0] == '\0')
        fprintf(stderr, "[rank %d] line %d: %s: got %s (handle %lld, message '%s'), want %s\n",
                mt_rank, line, what, herd_status_name(rc), (long long)handle, herd_last_error(),
                herd_status_name(want));
    mt_check_status_impl(rc, want, what, __FILE__, line);
    mt_check_impl(handle == 0, "*handle_out == 0 after a refused call", __FILE__, line);
    mt_check_impl(herd_last_error()[0] != '\0', "herd_last_error() is set", __FILE__, line);
    if (name != NULL) {
        if (!mt_last_error_has(name))
            fprintf(stderr, "[rank %d] line %d: %s: message does not name '%s': %s\n", mt_rank,
                    line, what, name, herd_last_error());
        mt_check_impl(mt_last_error_has(name), "the message names the tensor", __FILE__, line);
    }
}
/* The call runs first: only then is *handle_out worth reading. */
#define CHECK_REFUSED(call, want, handle, name, what)                                          \
    do {                                                                                       \
        int refused_rc_ = (call);                                                              \
        check_refused(refused_rc_, (want), (handle), (name), (what), __LINE__);                \
    } while (0)

/* ---- before the first herd_init ---------------------------------------------------------- */

static void test_before_init(void)
{
    MT_CHECK(herd_initialized() == 0);
    MT_CHECK(herd_rank() == -1);
    MT_CHECK(herd_size() == -1);
    MT_CHECK(herd_local_rank() == -1);
    MT_CHECK(herd_local_size() == -1);
    /* No handle was ever made: poll and wait are usage errors, not "not found". */
    MT_CHECK_STATUS(herd_poll_handle(1), HERD_ERR_INVALID_USAGE);
    MT_CHECK_STATUS(herd_poll_handle(0), HERD_ERR_INVALID_USAGE);
    MT_CHECK_STATUS(herd_wait_handle(1, -1), HERD_ERR_INVALID_USAGE);
    MT_CHECK_STATUS(herd_wait_handle(12345, 0), HERD_ERR_INVALID_USAGE);
    MT_CHECK(herd_last_error()[0] != '\0');

    float buf[4] = {1, 2, 3, 4};
    herd_handle_t h = 99;
    CHECK_REFUSED(herd_push_pull("early", buf, buf, 4, HERD_FLOAT32, HERD_SUM, HERD_DEVICE_CPU,
                                 &h),
                  HERD_ERR_INVALID_USAGE, h, NULL, "push_pull before init");
    h = 99;
    CHECK_REFUSED(herd_broadcast("early", buf, 4, HERD_FLOAT32, 0, HERD_DEVICE_CPU, &h),
                  HERD_ERR_INVALID_USAGE, h, NULL, "broadcast before init");
    int64_t key = 42;
    MT_CHECK_STATUS(herd_declare_tensor("early", &key), HERD_ERR_INVALID_USAGE);
    MT_CHECK(herd_last_error()[0] != '\0');
    /* Idempotent shutdown: nothing to do is fine. */
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);

    /* Plain queries need no init. */
    MT_CHECK(herd_abi_version() == HERD_ABI_VERSION);
    MT_CHECK(herd_version() != NULL && strlen(herd_version()) >= 5);
    MT_CHECK(strcmp(herd_status_name(HERD_ERR_MISMATCH), "HERD_ERR_MISMATCH") == 0);
    MT_CHECK(strcmp(herd_status_name(HERD_OK), "HERD_OK") == 0);
    MT_CHECK(strcmp(herd_strerror(12345), "unknown status") == 0);
    MT_CHECK(herd_strerror(HERD_ERR_SHUTDOWN)[0] != '\0');
    MT_CHECK(herd_dtype_size(HERD_BFLOAT16) == 2);
    MT_CHECK(herd_dtype_size(8) == HERD_ERR_INVALID_ARG);
    MT_CHECK(herd_dtype_size(-1) == HERD_ERR_INVALID_ARG);
}

/* A bad HERD_* value fails herd_init with the variable's name, and creates nothing. */
static void test_bad_environment(void)
{
    static const char *const vars[][2] = {
        {"HERD_FUSION_THRESHOLD", "lots"},
        {"HERD_FUSION_THRESHOLD", "-5"},
        {"HERD_LOG_LEVEL", "loud"},
        {"HERD_MAX_HANDLES", "3"},
        {"HERD_SPIN_US", "12x"},
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *old = getenv(vars[i][0]);
        char *saved = old ? strdup(old) : NULL;
        setenv(vars[i][0], vars[i][1], 1);
        int rc = herd_init();
        MT_CHECK_STATUS(rc, HERD_ERR_INVALID_ARG);
        if (!mt_last_error_has(vars[i][0]))
            fprintf(stderr, "[rank %d] herd_init with %s=%s: message '%s'\n", mt_rank,
                    vars[i][0], vars[i][1], herd_last_error());
        MT_CHECK(mt_last_error_has(vars[i][0]));
        MT_CHECK(herd_initialized() == 0);
        MT_CHECK(herd_rank() == -1);
        if (rc == HERD_OK)
            herd_shutdown();
        if (saved) {
            setenv(vars[i][0], saved, 1);
            free(saved);
        } else {
            unsetenv(vars[i][0]);
        }
    }
}

static void test_init(void)
{
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    MT_CHECK(herd_initialized() == 1);
    MT_CHECK(herd_rank() == mt_rank);
    MT_CHECK(herd_size() == mt_size);
    /* Twice is a usage error, and herd keeps running. */
    MT_CHECK_STATUS(herd_init(), HERD_ERR_INVALID_USAGE);
    MT_CHECK(herd_last_error()[0] != '\0');
    MT_CHECK(herd_initialized() == 1);
    int32_t x[3] = {mt_rank, 1, -mt_rank};
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("after.init.twice", x, x, 3, HERD_INT32, HERD_SUM,
                                   HERD_DEVICE_CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "after.init.twice"), HERD_OK);
    MT_CHECK(x[0] == mt_size * (mt_size - 1) / 2 && x[1] == mt_size && x[2] == -x[0]);
}

/* ---- the table of bad arguments ------------------------------------------------------------ */

enum call { PUSH_PULL, BROADCAST, DECLARE };
enum buf { B_OK, B_NULL, B_PLUS1, B_PLUS2, B_OVERLAP, B_UNDERLAP, B_ADJACENT, B_SAME };
enum name_kind { N_GIVEN, N_NULL, N_EMPTY, N_255, N_256, N_10000 };
enum { ROOT_SIZE = -1000, NO_HANDLE = 1, WANT_GPU = 1000 /* see visible_gpus() */ };

typedef struct row {
    const char *what;
    int call;
    int name_kind;
    const char *name; /* N_GIVEN */
    int send, recv;   /* enum buf; broadcast uses send */
    int64_t count;
    int dtype, op, root, device;
    int flags;
    int want;
} row_t;

#define PP(what, name, send, recv, count, dtype, op, device, want)                             \
    {what, PUSH_PULL, N_GIVEN, name, send, recv, count, dtype, op, 0, device, 0, want}
#define BC(what, name, buf, count, dtype, root, device, want)                                  \
    {what, BROADCAST, N_GIVEN, name, buf, B_OK, count, dtype, HERD_SUM, root, device, 0, want}
#define CPU HERD_DEVICE_CPU
#define BAD HERD_ERR_INVALID_ARG

static const row_t rows[] = {
    /* names */
    {"NULL name", PUSH_PULL, N_NULL, NULL, B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, 0, CPU, 0,
     BAD},
    {"empty name", PUSH_PULL, N_EMPTY, NULL, B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, 0, CPU, 0,
     BAD},
    {"256-byte name", PUSH_PULL, N_256, NULL, B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, 0, CPU,
     0, BAD},
    {"10000-byte name", PUSH_PULL, N_10000, NULL, B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, 0,
     CPU, 0, BAD},
    {"255-byte name is fine", PUSH_PULL, N_255, NULL, B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, 0,
     CPU, 0, HERD_OK},
    {"bcast NULL name", BROADCAST, N_NULL, NULL, B_OK, B_OK, 4, HERD_FLOAT32, 0, 0, CPU, 0, BAD},
    {"bcast empty name", BROADCAST, N_EMPTY, NULL, B_OK, B_OK, 4, HERD_FLOAT32, 0, 0, CPU, 0,
     BAD},
    {"bcast 256-byte name", BROADCAST, N_256, NULL, B_OK, B_OK, 4, HERD_FLOAT32, 0, 0, CPU, 0,
     BAD},
    {"bcast 10000-byte name", BROADCAST, N_10000, NULL, B_OK, B_OK, 4, HERD_FLOAT32, 0, 0, CPU,
     0, BAD},
    {"declare NULL name", DECLARE, N_NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, BAD},
    {"declare empty name", DECLARE, N_EMPTY, NULL, 0, 0, 0, 0, 0, 0, 0, 0, BAD},
    {"declare 256-byte name", DECLARE, N_256, NULL, 0, 0, 0, 0, 0, 0, 0, 0, BAD},
    {"declare 10000-byte name", DECLARE, N_10000, NULL, 0, 0, 0, 0, 0, 0, 0, 0, BAD},
    {"declare 255-byte name", DECLARE, N_255, NULL, 0, 0, 0, 0, 0, 0, 0, 0, HERD_OK},
    /* out-parameters */
    {"NULL handle_out", PUSH_PULL, N_GIVEN, "bad.nohandle", B_OK, B_SAME, 4, HERD_FLOAT32,
     HERD_SUM, 0, CPU, NO_HANDLE, BAD},
    {"bcast NULL handle_out", BROADCAST, N_GIVEN, "bad.nohandle", B_OK, B_OK, 4, HERD_FLOAT32,
     0, 0, CPU, NO_HANDLE, BAD},
    {"declare NULL key_out", DECLARE, N_GIVEN, "bad.nokey", 0, 0, 0, 0, 0, 0, 0, NO_HANDLE,
     BAD},
    /* counts and types */
    PP("negative count", "bad.count", B_OK, B_SAME, -1, HERD_FLOAT32, HERD_SUM, CPU, BAD),
    PP("INT64_MIN count", "bad.count", B_OK, B_SAME, INT64_MIN, HERD_INT8, HERD_SUM, CPU, BAD),
    BC("bcast negative count", "bad.count", B_OK, -3, HERD_INT32, 0, CPU, BAD),
    PP("dtype 8", "bad.dtype", B_OK, B_SAME, 4, 8, HERD_SUM, CPU, BAD),
    PP("dtype -1", "bad.dtype", B_OK, B_SAME, 4, -1, HERD_SUM, CPU, BAD),
    PP("dtype 100", "bad.dtype", B_OK, B_SAME, 4, 100, HERD_SUM, CPU, BAD),
    BC("bcast dtype 8", "bad.dtype", B_OK, 4, 8, 0, CPU, BAD),
    BC("bcast dtype -1", "bad.dtype", B_OK, 4, -1, 0, CPU, BAD),
    PP("op 5", "bad.op", B_OK, B_SAME, 4, HERD_FLOAT32, 5, CPU, BAD),
    PP("op -1", "bad.op", B_OK, B_SAME, 4, HERD_FLOAT32, -1, CPU, BAD),
    PP("count overflows bytes (fp32)", "bad.huge", B_OK, B_SAME, INT64_MAX / 2, HERD_FLOAT32,
       HERD_SUM, CPU, BAD),
    PP("count overflows bytes (fp64)", "bad.huge", B_OK, B_SAME, INT64_MAX / 8 + 1,
       HERD_FLOAT64, HERD_SUM, CPU, BAD),
    BC("bcast count overflows bytes", "bad.huge", B_OK, INT64_MAX / 2, HERD_INT32, 0, CPU, BAD),
    /* buffers */
    PP("NULL sendbuf", "bad.nullsend", B_NULL, B_OK, 4, HERD_FLOAT32, HERD_SUM, CPU, BAD),
    PP("NULL recvbuf", "bad.nullrecv", B_OK, B_NULL, 4, HERD_FLOAT32, HERD_SUM, CPU, BAD),
    PP("NULL both", "bad.nullboth", B_NULL, B_NULL, 1, HERD_UINT8, HERD_SUM, CPU, BAD),
    BC("bcast NULL buf", "bad.nullbuf", B_NULL, 4, HERD_FLOAT32, 0, CPU, BAD),
    PP("NULL buffers, count 0", "ok.null.zero", B_NULL, B_NULL, 0, HERD_FLOAT32, HERD_SUM, CPU,
       HERD_OK),
    BC("bcast NULL buf, count 0", "ok.bnull.zero", B_NULL, 0, HERD_FLOAT64, 0, CPU, HERD_OK),
    PP("misaligned int32 sendbuf", "bad.align.i32", B_PLUS1, B_OK, 4, HERD_INT32, HERD_SUM, CPU,
       BAD),
    PP("misaligned int32 recvbuf", "bad.align.i32r", B_OK, B_PLUS1, 4, HERD_INT32, HERD_SUM,
       CPU, BAD),
    PP("misaligned float64", "bad.align.f64", B_PLUS1, B_SAME, 4, HERD_FLOAT64, HERD_SUM, CPU,
       BAD),
    PP("float64 aligned to 2 only", "bad.align.f64b", B_PLUS2, B_SAME, 4, HERD_FLOAT64, HERD_SUM,
       CPU, BAD),
    PP("misaligned float16", "bad.align.f16", B_PLUS1, B_SAME, 4, HERD_FLOAT16, HERD_SUM, CPU,
       BAD),
    PP("misaligned bfloat16", "bad.align.bf16", B_PLUS1, B_SAME, 4, HERD_BFLOAT16, HERD_MAX, CPU,
       BAD),
    PP("misaligned int64", "bad.align.i64", B_PLUS1, B_SAME, 4, HERD_INT64, HERD_SUM, CPU, BAD),
    PP("float32 aligned to 2 only", "bad.align.f32", B_PLUS2, B_SAME, 4, HERD_FLOAT32, HERD_SUM,
       CPU, BAD),
    BC("bcast misaligned float16", "bad.align.bf16b", B_PLUS1, 4, HERD_FLOAT16, 0, CPU, BAD),
    BC("bcast misaligned int64", "bad.align.bi64", B_PLUS1, 4, HERD_INT64, 0, CPU, BAD),
    PP("float16 at an even address is fine", "ok.align.f16", B_PLUS2, B_SAME, 4, HERD_FLOAT16,
       HERD_SUM, CPU, HERD_OK),
    PP("uint8 at an odd address is fine", "ok.align.u8", B_PLUS1, B_SAME, 5, HERD_UINT8,
       HERD_SUM, CPU, HERD_OK),
    PP("int8 at an odd address is fine", "ok.align.i8", B_PLUS1, B_OK, 5, HERD_INT8, HERD_MIN,
       CPU, HERD_OK),
    PP("overlap: recv one element past send", "bad.overlap", B_OK, B_OVERLAP, 4, HERD_INT32,
       HERD_SUM, CPU, BAD),
    PP("overlap: recv one element before send", "bad.underlap", B_OK, B_UNDERLAP, 4, HERD_INT32,
       HERD_SUM, CPU, BAD),
    PP("adjacent, not overlapping, is fine", "ok.adjacent", B_OK, B_ADJACENT, 4, HERD_INT32,
       HERD_SUM, CPU, HERD_OK),
    /* roots and devices */
    BC("root -1", "bad.root", B_OK, 4, HERD_FLOAT32, -1, CPU, BAD),
    BC("root == size", "bad.root", B_OK, 4, HERD_FLOAT32, ROOT_SIZE, CPU, BAD),
    BC("root 1000", "bad.root", B_OK, 4, HERD_FLOAT32, 1000, CPU, BAD),
    PP("device -2", "bad.device", B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, -2, BAD),
    PP("device INT_MIN", "bad.device", B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, INT_MIN, BAD),
    PP("device 0 (GPU)", "bad.gpu", B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, 0, WANT_GPU),
    PP("device 3 (GPU)", "bad.gpu", B_OK, B_SAME, 4, HERD_FLOAT32, HERD_SUM, 3, WANT_GPU),
    BC("bcast device -2", "bad.device", B_OK, 4, HERD_FLOAT32, 0, -2, BAD),
    BC("bcast device 0 (GPU)", "bad.gpu", B_OK, 4, HERD_FLOAT32, 0, 0, WANT_GPU),
};

enum { ARENA = 4096 };

static char *pick_buf(int kind, char *base)
{
    switch (kind) {
    case B_NULL: return NULL;
    case B_PLUS1: return base + 1;
    case B_PLUS2: return base + 2;
    default: return base;
    }
}

static void run_row(const row_t *r, int index, char *name_255, char *name_256,
                    char *name_10000)
{
    char given[300];
    const char *name = r->name;
    switch (r->name_kind) {
    case N_NULL: name = NULL; break;
    case N_EMPTY: name = ""; break;
    case N_255:
        /* A distinct 255-byte name per row: the OK rows are collective ops of their own. */
        name_255[0] = (char)('a' + index % 26);
        name = name_255;
        break;
    case N_256: name = name_256; break;
    case N_10000: name = name_10000; break;
    default: break;
    }
    if (r->name_kind == N_GIVEN && r->want == HERD_OK) {
        snprintf(given, sizeof given, "%s.%d", r->name, index);
        name = given;
    }
    /* Aligned arenas, 64-byte aligned: send at the start, recv well apart unless asked. */
    char *arena = mt_alloc(3 * ARENA);
    size_t esize = mt_dtype_size(r->dtype);
    char *send_base = arena + ARENA;
    char *send = pick_buf(r->send, send_base);
    char *recv;
    switch (r->recv) {
    case B_SAME: recv = send; break;
    case B_OVERLAP: recv = send_base + esize; break;
    case B_UNDERLAP: recv = send_base - esize; break;
    case B_ADJACENT: recv = send_base + (size_t)r->count * esize; break;
    default: recv = pick_buf(r->recv, arena + 2 * ARENA); break;
    }
    int root = r->root == ROOT_SIZE ? mt_size : r->root;
    herd_handle_t h = 777;
    int64_t key = 777;
    int rc;
    if (r->call == PUSH_PULL)
        rc = herd_push_pull(name, send, recv, r->count, r->dtype, r->op, r->device,
                            r->flags & NO_HANDLE ? NULL : &h);
    else if (r->call == BROADCAST)
        rc = herd_broadcast(name, send, r->count, r->dtype, root, r->device,
                            r->flags & NO_HANDLE ? NULL : &h);
    else
        rc = herd_declare_tensor(name, r->flags & NO_HANDLE ? NULL : &key);

    char what[160];
    snprintf(what, sizeof what, "row %d (%s)", index, r->what);
    int want = r->want;
    if (want == WANT_GPU)
        want = visible_gpus() > 0 ? HERD_ERR_INVALID_ARG : HERD_ERR_NOT_SUPPORTED;
    if (want == HERD_OK) {
        MT_CHECK_STATUS(rc, HERD_OK);
        if (r->call == DECLARE) {
            MT_CHECK(key >= 0);
        } else {
            MT_CHECK(h > 0);
            if (rc == HERD_OK)
                MT_CHECK_STATUS(mt_wait(h, what), HERD_OK);
        }
    } else if (r->call == DECLARE) {
        MT_CHECK_STATUS(rc, want);
        MT_CHECK(herd_last_error()[0] != '\0');
    } else {
        /* The tensor is named when the name itself is fine and the handle pointer exists. */
        int named = r->name_kind == N_GIVEN && !(r->flags & NO_HANDLE);
        CHECK_REFUSED(rc, want, (r->flags & NO_HANDLE) ? 0 : h, named ? name : NULL, what);
        if (rc == HERD_OK && h > 0)
            mt_wait(h, what); /* accepted by mistake: still complete it on every rank */
    }
    free(arena);
}

static void test_bad_argument_table(void)
{
    char *name_255 = malloc(256), *name_256 = malloc(257), *name_10000 = malloc(10001);
    memset(name_255, 'n', 255);
    name_255[255] = '\0';
    memset(name_256, 'm', 256);
    name_256[256] = '\0';
    memset(name_10000, 'x', 10000);
    name_10000[10000] = '\0';
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        run_row(&rows[i], (int)i, name_255, name_256, name_10000);
    free(name_255);
    free(name_256);
    free(name_10000);
}

/* ---- handles ------------------------------------------------------------------------------ */

static void test_bad_handles(void)
{
    MT_CHECK_STATUS(herd_wait_handle(0, -1), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_wait_handle(-5, 0), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_poll_handle(0), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_poll_handle(-5), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_wait_handle(INT64_MAX, 0), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_wait_handle(INT64_MIN, 0), HERD_ERR_NOT_FOUND);

    int64_t v[8];
    for (int i = 0; i < 8; i++)
        v[i] = mt_rank * 8 + i;
    herd_handle_t h = 0;
    MT_CHECK_STATUS(herd_push_pull("handles.real", v, v, 8, HERD_INT64, HERD_MAX, CPU, &h),
                    HERD_OK);
    /* Forged handles next to a live one: another generation, another index. */
    for (int bit = 20; bit < 62; bit += 7)
        MT_CHECK_STATUS(herd_wait_handle(h ^ ((int64_t)1 << bit), 0), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_wait_handle(h + 1, 0), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_poll_handle(h + 1), HERD_ERR_NOT_FOUND);
    /* A bad timeout is refused and leaves the handle live. */
    MT_CHECK_STATUS(herd_wait_handle(h, -2), HERD_ERR_INVALID_ARG);
    MT_CHECK(herd_last_error()[0] != '\0');
    MT_CHECK_STATUS(herd_wait_handle(h, INT64_MIN), HERD_ERR_INVALID_ARG);
    int p = herd_poll_handle(h);
    MT_CHECK(p == HERD_INPROGRESS || p == HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "handles.real"), HERD_OK);
    for (int i = 0; i < 8; i++)
        MT_CHECK(v[i] == (int64_t)(mt_size - 1) * 8 + i);
    /* Released: a second wait, and a poll, are refused. */
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_NOT_FOUND);
    MT_CHECK(mt_last_error_has("handle"));
    MT_CHECK_STATUS(herd_poll_handle(h), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_wait_handle(h, 0), HERD_ERR_NOT_FOUND);

    /* The next submission may reuse the slot; the old handle must stay dead. */
    herd_handle_t h2 = 0;
    MT_CHECK_STATUS(herd_push_pull("handles.real", v, v, 8, HERD_INT64, HERD_MAX, CPU, &h2),
                    HERD_OK);
    MT_CHECK(h2 != h);
    MT_CHECK_STATUS(herd_wait_handle(h, -1), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(mt_wait(h2, "handles.real"), HERD_OK);
}

/* A name in flight cannot be submitted again on the same rank. */
static void test_duplicate_in_flight(void)
{
    int32_t a[16], b[16];
    for (int i = 0; i < 16; i++)
        a[i] = b[i] = mt_rank + i;
    herd_handle_t h = 0, h2 = 99;
    /* Rank 0 submits while every other rank waits in a barrier: on rank 0 the op stays in
     * flight until the barrier, so the duplicate is refused for sure. With one rank the op may
     * already be done; then the name is free and the second call may succeed. */
    if (mt_rank != 0)
        MPI_Barrier(MPI_COMM_WORLD);
    MT_CHECK_STATUS(herd_push_pull("dup", a, a, 16, HERD_INT32, HERD_SUM, CPU, &h), HERD_OK);
    int rc = herd_push_pull("dup", b, b, 16, HERD_INT32, HERD_SUM, CPU, &h2);
    if (mt_size > 1 && mt_rank == 0) {
        CHECK_REFUSED(rc, HERD_ERR_INVALID_USAGE, h2, "dup", "duplicate push_pull");
        h2 = 99;
        CHECK_REFUSED(herd_broadcast("dup", b, 16, HERD_INT32, 0, CPU, &h2),
                      HERD_ERR_INVALID_USAGE, h2, "dup", "broadcast of an in-flight name");
        MT_CHECK(herd_poll_handle(h) == HERD_INPROGRESS);
    } else if (rc == HERD_OK) {
        /* Not in flight any more (one rank, or another rank was quick): it is a real op. */
        MT_CHECK(mt_size == 1 || mt_rank != 0);
    } else {
        CHECK_REFUSED(rc, HERD_ERR_INVALID_USAGE, h2, "dup", "duplicate push_pull");
    }
    if (mt_rank == 0)
        MPI_Barrier(MPI_COMM_WORLD);
    MT_CHECK_STATUS(mt_wait(h, "dup"), HERD_OK);
    for (int i = 0; i < 16; i++)
        MT_CHECK(a[i] == mt_size * (mt_size - 1) / 2 + mt_size * i);
    /* Every rank must issue the same collectives: where the second submission went through,
     * wait on it; where it did not, submit it now, so every rank has "dup" twice. */
    if (rc != HERD_OK)
        MT_CHECK_STATUS(herd_push_pull("dup", b, b, 16, HERD_INT32, HERD_SUM, CPU, &h2),
                        HERD_OK);
    MT_CHECK_STATUS(mt_wait(h2, "dup (second)"), HERD_OK);
    for (int i = 0; i < 16; i++)
        MT_CHECK(b[i] == mt_size * (mt_size - 1) / 2 + mt_size * i);
}

/* HERD_MAX_HANDLES=16: the 17th live handle is refused with HERD_ERR_NO_MEMORY. */
static void test_handle_table_full(void)
{
    const char *env = getenv("HERD_MAX_HANDLES");
    if (env == NULL || atoi(env) != 16)
        return;
    enum { N = 16 };
    herd_handle_t hs[N];
    int32_t x[N + 1];
    for (int i = 0; i <= N; i++)
        x[i] = i + mt_rank;
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "full.%d", i);
        MT_CHECK_STATUS(herd_push_pull(name, &x[i], &x[i], 1, HERD_INT32, HERD_SUM, CPU, &hs[i]),
                        HERD_OK);
    }
    herd_handle_t h = 5;
    CHECK_REFUSED(herd_push_pull("full.16", &x[N], &x[N], 1, HERD_INT32, HERD_SUM, CPU, &h),
                  HERD_ERR_NO_MEMORY, h, NULL, "17th handle");
    /* The refused name was not left "in flight": it can be submitted once slots free up. */
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "full.%d", i);
        MT_CHECK_STATUS(mt_wait(hs[i], name), HERD_OK);
        MT_CHECK(x[i] == mt_size * i + mt_size * (mt_size - 1) / 2);
    }
    MT_CHECK_STATUS(herd_push_pull("full.16", &x[N], &x[N], 1, HERD_INT32, HERD_SUM, CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "full.16"), HERD_OK);
    MT_CHECK(x[N] == mt_size * N + mt_size * (mt_size - 1) / 2);
}

/* ---- shutdown, after it, and a second life ------------------------------------------------ */

static void test_shutdown_and_after(void)
{
    /* One op complete but not waited, one submitted just before shutdown: both were submitted
     * by every rank, so both complete normally, and their handles outlive the shutdown. */
    int64_t done_v[4], late_v[4];
    for (int i = 0; i < 4; i++)
        done_v[i] = late_v[i] = mt_rank * 10 + i;
    herd_handle_t done = 0, late = 0;
    MT_CHECK_STATUS(herd_push_pull("end.done", done_v, done_v, 4, HERD_INT64, HERD_SUM, CPU,
                                   &done),
                    HERD_OK);
    MT_CHECK_STATUS(mt_poll_until_done(done, "end.done"), HERD_OK);
    MT_CHECK_STATUS(herd_push_pull("end.late", late_v, late_v, 4, HERD_INT64, HERD_MIN, CPU,
                                   &late),
                    HERD_OK);
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK);
    MT_CHECK_STATUS(herd_shutdown(), HERD_OK); /* idempotent */
    MT_CHECK(herd_initialized() == 0);
    MT_CHECK(herd_rank() == -1 && herd_size() == -1);
    MT_CHECK(herd_local_rank() == -1 && herd_local_size() == -1);
    MT_CHECK_STATUS(herd_wait_handle(done, -1), HERD_OK);
    MT_CHECK_STATUS(herd_wait_handle(late, -1), HERD_OK);
    for (int i = 0; i < 4; i++) {
        MT_CHECK(done_v[i] == 10 * (int64_t)mt_size * (mt_size - 1) / 2 + mt_size * i);
        MT_CHECK(late_v[i] == i);
    }
    MT_CHECK_STATUS(herd_wait_handle(done, -1), HERD_ERR_NOT_FOUND);

    float buf[4] = {0};
    herd_handle_t h = 5;
    CHECK_REFUSED(herd_push_pull("after", buf, buf, 4, HERD_FLOAT32, HERD_SUM, CPU, &h),
                  HERD_ERR_INVALID_USAGE, h, NULL, "push_pull after shutdown");
    h = 5;
    CHECK_REFUSED(herd_broadcast("after", buf, 4, HERD_FLOAT32, 0, CPU, &h),
                  HERD_ERR_INVALID_USAGE, h, NULL, "broadcast after shutdown");
    int64_t key = 0;
    MT_CHECK_STATUS(herd_declare_tensor("after", &key), HERD_ERR_INVALID_USAGE);
    /* The handle table outlives shutdown: unknown handles are simply not found. */
    MT_CHECK_STATUS(herd_wait_handle(12345, 0), HERD_ERR_NOT_FOUND);
    MT_CHECK_STATUS(herd_poll_handle(0), HERD_ERR_NOT_FOUND);
    int finalized = 1;
    MPI_Finalized(&finalized);
    MT_CHECK(finalized == 0);
}

/* The program's MPI is still up, so herd can start again; names start afresh. */
static void test_second_life(void)
{
    MT_CHECK_STATUS(herd_init(), HERD_OK);
    MT_CHECK(herd_rank() == mt_rank && herd_size() == mt_size);
    int64_t k1 = -1, k2 = -1;
    MT_CHECK_STATUS(herd_declare_tensor("second.a", &k1), HERD_OK);
    MT_CHECK_STATUS(herd_declare_tensor("second.b", &k2), HERD_OK);
    MT_CHECK(k1 >= 0 && k2 > k1);
    double d[5];
    for (int i = 0; i < 5; i++)
        d[i] = mt_rank + i;
    herd_handle_t h = 0;
    /* "end.late" was used in the first life: fine again now. */
    MT_CHECK_STATUS(herd_push_pull("end.late", d, d, 5, HERD_FLOAT64, HERD_MAX, CPU, &h),
                    HERD_OK);
    MT_CHECK_STATUS(mt_wait(h, "end.late"), HERD_OK);
    for (int i = 0; i < 5; i++)
        MT_CHECK(d[i] == (double)(mt_size - 1 + i));
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"before_init", test_before_init},
        {"bad_environment", test_bad_environment},
        {"init_once", test_init},
        {"bad_argument_table", test_bad_argument_table},
        {"bad_handles", test_bad_handles},
        {"duplicate_in_flight", test_duplicate_in_flight},
        {"handle_table_full", test_handle_table_full},
        {"shutdown_and_after", test_shutdown_and_after},
        {"second_life", test_second_life},
    };
    return mt_main(argc, argv, "bad_arguments", tests, sizeof tests / sizeof tests[0],
                   MT_USER_MPI_NO_INIT);
}
