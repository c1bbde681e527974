/* status.c - the code table and the per-thread last error. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char tls_last_error[HERD_ERRMSG_MAX];

const char *herd_strerror(int status)
{
    switch (status) {
#define HERD_STATUS_SENTENCE(code, sentence)                                                  \
    case code:                                                                                 \
        return sentence;
        HERD_STATUS_MAP(HERD_STATUS_SENTENCE)
#undef HERD_STATUS_SENTENCE
    default:
        return "unknown status";
    }
}

const char *herd_status_name(int status)
{
    switch (status) {
#define HERD_STATUS_NAME(code, sentence)                                                      \
    case code:                                                                                 \
        return #code;
        HERD_STATUS_MAP(HERD_STATUS_NAME)
#undef HERD_STATUS_NAME
    default:
        return "HERD_UNKNOWN_STATUS";
    }
}

const char *herd_last_error(void)
{
    return tls_last_error;
}

int herd__status_set(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_last_error, sizeof tls_last_error, fmt, ap);
    va_end(ap);
    return status;
}

int herd__status_set_msg(int status, const char *msg)
{
    snprintf(tls_last_error, sizeof tls_last_error, "%s", msg ? msg : "");
    return status;
}

void herd__status_clear(void)
{
    tls_last_error[0] = '\0';
}

const char *herd__status_last(void)
{
    return tls_last_error;
}
