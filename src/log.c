/* log.c - one line per message, written with a single fprintf so ranks' lines do not interleave
 * mid-line. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static atomic_int log_level = HERD_LOG_WARN;
static atomic_int log_rank = -1;

void herd__log_setup(int level, int rank)
{
    atomic_store(&log_level, level);
    atomic_store(&log_rank, rank);
}

int herd__log_enabled(int level)
{
    return level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void herd__log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (!herd__log_enabled(level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[herd %d] %s: %s\n", atomic_load(&log_rank), names[level], line);
}
