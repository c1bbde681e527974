/* unit.c - see unit.h. */
#include "unit.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int unit_run(const char *suite, CU_TestInfo *tests)
{
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CU_initialize_registry: %s\n", CU_get_error_msg());
        return 2;
    }
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    if (s == NULL) {
        fprintf(stderr, "CU_add_suite: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 2;
    }
    for (CU_TestInfo *t = tests; t->pName != NULL; t++) {
        if (CU_add_test(s, t->pName, t->pTestFunc) == NULL) {
            fprintf(stderr, "CU_add_test(%s): %s\n", t->pName, CU_get_error_msg());
            CU_cleanup_registry();
            return 2;
        }
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_ErrorCode rc = CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    unsigned tests_failed = CU_get_number_of_tests_failed();
    unsigned tests_run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    printf("\n%s: %u tests run, %u failed, %u assertion failures\n", suite, tests_run, tests_failed,
           failures);
    fflush(stdout);
    if (rc != CUE_SUCCESS)
        return 2;
    return failures != 0 || tests_failed != 0 ? 1 : 0;
}

static void report(int ok, const char *message, const char *file, int line, int fatal)
{
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, message, file, "",
                            fatal ? CU_TRUE : CU_FALSE);
}

void unit_eq_int(long long got, long long want, const char *expr, const char *file, int line,
                 int fatal)
{
    if (got == want) {
        report(1, expr, file, line, fatal);
        return;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: got %lld, expected %lld", expr, got, want);
    report(0, msg, file, line, fatal);
}

void unit_eq_hex(unsigned long long got, unsigned long long want, const char *expr,
                 const char *file, int line, int fatal)
{
    if (got == want) {
        report(1, expr, file, line, fatal);
        return;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: got 0x%llx, expected 0x%llx", expr, got, want);
    report(0, msg, file, line, fatal);
}

void unit_eq_str(const char *got, const char *want, const char *expr, const char *file, int line,
                 int fatal)
{
    int ok = got != NULL && want != NULL ? strcmp(got, want) == 0 : got == want;
    if (ok) {
        report(1, expr, file, line, fatal);
        return;
    }
    char msg[2048];
    snprintf(msg, sizeof msg, "%s: got \"%s\", expected \"%s\"", expr, got ? got : "(null)",
             want ? want : "(null)");
    report(0, msg, file, line, fatal);
}

void unit_eq_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                 const char *expr, const char *file, int line)
{
    int ok = got_len == want_len && (got_len == 0 || memcmp(got, want, got_len) == 0);
    if (ok) {
        report(1, expr, file, line, 0);
        return;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: got %zu bytes \"%.*s\", expected %zu bytes \"%.*s\"", expr,
             got_len, (int)(got_len > 200 ? 200 : got_len), got ? (const char *)got : "", want_len,
             (int)(want_len > 200 ? 200 : want_len), want ? (const char *)want : "");
    report(0, msg, file, line, 0);
}

void unit_contains(const char *haystack, const char *needle, const char *expr, const char *file,
                   int line)
{
    if (haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL) {
        report(1, expr, file, line, 0);
        return;
    }
    char msg[2048];
    snprintf(msg, sizeof msg, "%s: \"%s\" does not contain \"%s\"", expr,
             haystack ? haystack : "(null)", needle ? needle : "(null)");
    report(0, msg, file, line, 0);
}

void unit_eq_double(double got, double want, const char *expr, const char *file, int line)
{
    /* Exact comparison by value; two NaNs are not equal here on purpose. */
    if (got == want) {
        report(1, expr, file, line, 0);
        return;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: got %.17g (%a), expected %.17g (%a)", expr, got, got, want,
             want);
    report(0, msg, file, line, 0);
}

void unit_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(0, msg, file, line, 0);
}

void unit_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int64_t unit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t unit_rng_next(unit_rng_t *r)
{
    uint64_t x = r->state ? r->state : UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->state = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

uint64_t unit_rng_below(unit_rng_t *r, uint64_t n)
{
    return n == 0 ? 0 : unit_rng_next(r) % n;
}
