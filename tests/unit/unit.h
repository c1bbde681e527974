/* unit.h - the shared runner and exact-value assertions of herd's unit tests.
 *
 * Each suite is one executable: its main() hands a CU_TestInfo list to unit_run(), which prints
 * the CUnit basic summary and returns non-zero when any assertion failed, so ctest sees it.
 * The UNIT_EQ_* assertions print the value they got next to the one they expected; they format
 * text only on failure, so they are cheap inside loops.
 */
#ifndef HERD_TESTS_UNIT_H
#define HERD_TESTS_UNIT_H

#include <stddef.h>
#include <stdint.h>

#include <CUnit/Basic.h>

/* Runs `tests` (terminated by CU_TEST_INFO_NULL) as one suite named `suite`. Returns the process
 * exit status: 0 when every assertion passed, 1 when any failed, 2 when CUnit itself failed. */
int unit_run(const char *suite, CU_TestInfo *tests);

void unit_eq_int(long long got, long long want, const char *expr, const char *file, int line,
                 int fatal);
void unit_eq_hex(unsigned long long got, unsigned long long want, const char *expr,
                 const char *file, int line, int fatal);
void unit_eq_str(const char *got, const char *want, const char *expr, const char *file, int line,
                 int fatal);
void unit_eq_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                 const char *expr, const char *file, int line);
void unit_contains(const char *haystack, const char *needle, const char *expr, const char *file,
                   int line);
void unit_eq_double(double got, double want, const char *expr, const char *file, int line);
/* A failure with a formatted explanation (for loops that count their own mismatches). */
void unit_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define UNIT_EQ_INT(got, want)                                                                     \
    unit_eq_int((long long)(got), (long long)(want), #got " == " #want, __FILE__, __LINE__, 0)
#define UNIT_EQ_INT_FATAL(got, want)                                                               \
    unit_eq_int((long long)(got), (long long)(want), #got " == " #want, __FILE__, __LINE__, 1)
#define UNIT_EQ_HEX(got, want)                                                                     \
    unit_eq_hex((unsigned long long)(got), (unsigned long long)(want), #got " == " #want,          \
                __FILE__, __LINE__, 0)
#define UNIT_EQ_STR(got, want) unit_eq_str((got), (want), #got " == " #want, __FILE__, __LINE__, 0)
#define UNIT_EQ_MEM(got, got_len, want, want_len)                                                  \
    unit_eq_mem((got), (got_len), (want), (want_len), #got " == " #want, __FILE__, __LINE__)
#define UNIT_CONTAINS(haystack, needle)                                                            \
    unit_contains((haystack), (needle), #haystack " contains " #needle, __FILE__, __LINE__)
#define UNIT_EQ_DOUBLE(got, want)                                                                  \
    unit_eq_double((double)(got), (double)(want), #got " == " #want, __FILE__, __LINE__)
#define UNIT_FAIL(...) unit_fail(__FILE__, __LINE__, __VA_ARGS__)

/* Milliseconds of sleep, and elapsed-time helpers on CLOCK_MONOTONIC. */
void unit_sleep_ms(int64_t ms);
int64_t unit_now_ms(void);

/* A small deterministic generator (xorshift64*), so randomised tests replay exactly. */
typedef struct unit_rng {
    uint64_t state;
} unit_rng_t;
uint64_t unit_rng_next(unit_rng_t *r);
/* Uniform-ish in [0, n). */
uint64_t unit_rng_below(unit_rng_t *r, uint64_t n);

#endif
