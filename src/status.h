/* status.h - status codes' names and sentences, and the per-thread last-error message. */
#ifndef HERD_STATUS_H
#define HERD_STATUS_H

#include <stddef.h>

#include "herd.h"

/* One list defines every code: value, name, sentence. Values are pinned in herd.h. */
#define HERD_STATUS_MAP(X)                                                                     \
    X(HERD_OK, "success")                                                                      \
    X(HERD_INPROGRESS, "operation in progress")                                                \
    X(HERD_ERR_INVALID_ARG, "invalid argument")                                                \
    X(HERD_ERR_INVALID_USAGE, "invalid usage: call not allowed in the current state")         \
    X(HERD_ERR_NOT_FOUND, "handle not found: unknown, stale or already waited on")            \
    X(HERD_ERR_NOT_SUPPORTED, "not supported by this build or machine")                       \
    X(HERD_ERR_NO_MEMORY, "out of memory or table capacity")                                   \
    X(HERD_ERR_BACKEND, "communication backend (MPI) failed")                                  \
    X(HERD_ERR_MISMATCH, "ranks disagree about a tensor")                                      \
    X(HERD_ERR_TIMEOUT, "timed out")                                                           \
    X(HERD_ERR_SHUTDOWN, "herd shut down before the operation completed")                     \
    X(HERD_ERR_INTERNAL, "internal error in herd")                                             \
    X(HERD_ERR_STALLED, "stalled: some ranks never submitted the operation")

/* Longest error message kept, including the NUL. Longer messages are cut. */
enum { HERD_ERRMSG_MAX = 1024 };

/* Records `fmt` as this thread's last error and returns `status`, so call sites can write
 * `return herd__status_set(HERD_ERR_INVALID_ARG, "...", ...);`. */
int herd__status_set(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records an already formatted message. */
int herd__status_set_msg(int status, const char *msg);

/* Clears this thread's last error. */
void herd__status_clear(void);

/* This thread's last error message (never NULL). */
const char *herd__status_last(void);

#endif
