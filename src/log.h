/* log.h - leveled messages to stderr, prefixed with the rank. */
#ifndef HERD_LOG_H
#define HERD_LOG_H

#include "config.h"

/* Sets the threshold and the rank shown in the prefix (-1 before init). */
void herd__log_setup(int level, int rank);

/* Whether a message at `level` would be printed: lets callers skip building costly text. */
int herd__log_enabled(int level);

void herd__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define HERD_LOG_ERR(...) herd__log(HERD_LOG_ERROR, __VA_ARGS__)
#define HERD_LOG_WRN(...) herd__log(HERD_LOG_WARN, __VA_ARGS__)
#define HERD_LOG_INF(...) herd__log(HERD_LOG_INFO, __VA_ARGS__)
#define HERD_LOG_DBG(...)                                                                      \
    do {                                                                                       \
        if (herd__log_enabled(HERD_LOG_DEBUG))                                                 \
            herd__log(HERD_LOG_DEBUG, __VA_ARGS__);                                            \
    } while (0)

#endif
