/* test_status.c - status codes' pinned values, names and sentences; the per-thread last error. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "status.h"
#include "unit.h"

typedef struct code_case {
    int code;
    int value;
    const char *name;
    const char *sentence;
} code_case_t;

static const code_case_t codes[] = {
    {HERD_OK, 0, "HERD_OK", "success"},
    {HERD_INPROGRESS, 1, "HERD_INPROGRESS", "operation in progress"},
    {HERD_ERR_INVALID_ARG, -1, "HERD_ERR_INVALID_ARG", "invalid argument"},
    {HERD_ERR_INVALID_USAGE, -2, "HERD_ERR_INVALID_USAGE",
     "invalid usage: call not allowed in the current state"},
    {HERD_ERR_NOT_FOUND, -3, "HERD_ERR_NOT_FOUND",
     "handle not found: unknown, stale or already waited on"},
    {HERD_ERR_NOT_SUPPORTED, -4, "HERD_ERR_NOT_SUPPORTED",
     "not supported by this build or machine"},
    {HERD_ERR_NO_MEMORY, -5, "HERD_ERR_NO_MEMORY", "out of memory or table capacity"},
    {HERD_ERR_BACKEND, -6, "HERD_ERR_BACKEND", "communication backend (MPI) failed"},
    {HERD_ERR_MISMATCH, -7, "HERD_ERR_MISMATCH", "ranks disagree about a tensor"},
    {HERD_ERR_TIMEOUT, -8, "HERD_ERR_TIMEOUT", "timed out"},
    {HERD_ERR_SHUTDOWN, -9, "HERD_ERR_SHUTDOWN", "herd shut down before the operation completed"},
    {HERD_ERR_INTERNAL, -10, "HERD_ERR_INTERNAL", "internal error in herd"},
    {HERD_ERR_STALLED, -11, "HERD_ERR_STALLED",
     "stalled: some ranks never submitted the operation"},
};

static void test_codes_are_pinned(void)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        UNIT_EQ_INT(codes[i].code, codes[i].value);
}

static void test_every_code_has_its_name_and_sentence(void)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        UNIT_EQ_STR(herd_status_name(codes[i].code), codes[i].name);
        UNIT_EQ_STR(herd_strerror(codes[i].code), codes[i].sentence);
    }
}

static void test_the_map_lists_each_code_once(void)
{
    /* The X-macro is the single source: counting its entries catches a code added to herd.h
     * but not to the map (or the reverse, with the table above). */
    int n = 0;
#define COUNT_CODE(code, sentence) n++;
    HERD_STATUS_MAP(COUNT_CODE)
#undef COUNT_CODE
    UNIT_EQ_INT(n, (int)(sizeof codes / sizeof codes[0]));
}

static void test_unknown_codes(void)
{
    const int unknown[] = {2, 3, -12, -13, 100, -100, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        UNIT_EQ_STR(herd_status_name(unknown[i]), "HERD_UNKNOWN_STATUS");
        UNIT_EQ_STR(herd_strerror(unknown[i]), "unknown status");
    }
}

static void test_status_set_formats_and_returns_the_status(void)
{
    herd__status_clear();
    UNIT_EQ_STR(herd_last_error(), "");
    int rc = herd__status_set(HERD_ERR_MISMATCH, "tensor '%s': rank %d sent %lld %s", "fc.weight",
                              2, 2048LL, "float32");
    UNIT_EQ_INT(rc, HERD_ERR_MISMATCH);
    UNIT_EQ_STR(herd_last_error(), "tensor 'fc.weight': rank 2 sent 2048 float32");
    UNIT_EQ_STR(herd__status_last(), "tensor 'fc.weight': rank 2 sent 2048 float32");
    /* herd_last_error and herd__status_last read the same per-thread buffer. */
    UNIT_EQ_INT(herd_last_error() == herd__status_last(), 1);

    rc = herd__status_set(HERD_OK, "%s", "");
    UNIT_EQ_INT(rc, HERD_OK);
    UNIT_EQ_STR(herd_last_error(), "");
}

static void test_status_set_msg_copies_and_accepts_null(void)
{
    char text[] = "backend said: no route";
    UNIT_EQ_INT(herd__status_set_msg(HERD_ERR_BACKEND, text), HERD_ERR_BACKEND);
    text[0] = 'X'; /* the message was copied, not referenced */
    UNIT_EQ_STR(herd_last_error(), "backend said: no route");
    /* A '%' in an already formatted message is kept as is, not interpreted. */
    UNIT_EQ_INT(herd__status_set_msg(HERD_ERR_INTERNAL, "100% of %s"), HERD_ERR_INTERNAL);
    UNIT_EQ_STR(herd_last_error(), "100% of %s");
    UNIT_EQ_INT(herd__status_set_msg(HERD_ERR_INTERNAL, NULL), HERD_ERR_INTERNAL);
    UNIT_EQ_STR(herd_last_error(), "");
}

static void test_clear(void)
{
    herd__status_set(HERD_ERR_TIMEOUT, "late");
    UNIT_EQ_STR(herd_last_error(), "late");
    herd__status_clear();
    UNIT_EQ_STR(herd_last_error(), "");
}

static void test_long_messages_are_cut_to_the_buffer(void)
{
    static char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    herd__status_set(HERD_ERR_INTERNAL, "%s", big);
    UNIT_EQ_INT(strlen(herd_last_error()), HERD_ERRMSG_MAX - 1);
    herd__status_set_msg(HERD_ERR_INTERNAL, big);
    UNIT_EQ_INT(strlen(herd_last_error()), HERD_ERRMSG_MAX - 1);
    UNIT_EQ_INT(herd_last_error()[0], 'x');
}

typedef struct thread_view {
    char seen_at_start[64];
    char seen_after_own_set[64];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int phase; /* 1: thread set its message; 2: main set its own and checked */
} thread_view_t;

static void *other_thread(void *arg)
{
    thread_view_t *v = arg;
    snprintf(v->seen_at_start, sizeof v->seen_at_start, "%s", herd_last_error());
    herd__status_set(HERD_ERR_BACKEND, "thread %d", 7);
    pthread_mutex_lock(&v->lock);
    v->phase = 1;
    pthread_cond_broadcast(&v->cond);
    while (v->phase != 2)
        pthread_cond_wait(&v->cond, &v->lock);
    pthread_mutex_unlock(&v->lock);
    /* Main set its own message in between: this thread's must be untouched. */
    snprintf(v->seen_after_own_set, sizeof v->seen_after_own_set, "%s", herd_last_error());
    return NULL;
}

static void test_last_error_is_per_thread(void)
{
    thread_view_t v = {.phase = 0};
    pthread_mutex_init(&v.lock, NULL);
    pthread_cond_init(&v.cond, NULL);
    herd__status_set(HERD_ERR_MISMATCH, "main %s", "first");

    pthread_t t;
    UNIT_EQ_INT_FATAL(pthread_create(&t, NULL, other_thread, &v), 0);
    pthread_mutex_lock(&v.lock);
    while (v.phase != 1)
        pthread_cond_wait(&v.cond, &v.lock);
    /* The other thread set "thread 7": main's message is unchanged. */
    UNIT_EQ_STR(herd_last_error(), "main first");
    herd__status_set(HERD_ERR_MISMATCH, "main %s", "second");
    v.phase = 2;
    pthread_cond_broadcast(&v.cond);
    pthread_mutex_unlock(&v.lock);
    pthread_join(t, NULL);

    UNIT_EQ_STR(v.seen_at_start, "");
    UNIT_EQ_STR(v.seen_after_own_set, "thread 7");
    UNIT_EQ_STR(herd_last_error(), "main second");
    pthread_cond_destroy(&v.cond);
    pthread_mutex_destroy(&v.lock);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"codes_are_pinned", test_codes_are_pinned},
        {"every_code_has_its_name_and_sentence", test_every_code_has_its_name_and_sentence},
        {"the_map_lists_each_code_once", test_the_map_lists_each_code_once},
        {"unknown_codes", test_unknown_codes},
        {"status_set_formats_and_returns_the_status",
         test_status_set_formats_and_returns_the_status},
        {"status_set_msg_copies_and_accepts_null", test_status_set_msg_copies_and_accepts_null},
        {"clear", test_clear},
        {"long_messages_are_cut_to_the_buffer", test_long_messages_are_cut_to_the_buffer},
        {"last_error_is_per_thread", test_last_error_is_per_thread},
        CU_TEST_INFO_NULL,
    };
    return unit_run("status", tests);
}
