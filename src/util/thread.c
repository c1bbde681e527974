#include "util/thread.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "util/clock.h"

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "[herd] fatal: %s failed: %s\n", what, strerror(rc));
        abort();
    }
}

void herd__mutex_init(pthread_mutex_t *m)
{
    check(pthread_mutex_init(m, NULL), "pthread_mutex_init");
}

void herd__mutex_destroy(pthread_mutex_t *m)
{
    check(pthread_mutex_destroy(m), "pthread_mutex_destroy");
}

void herd__mutex_lock(pthread_mutex_t *m)
{
    check(pthread_mutex_lock(m), "pthread_mutex_lock");
}

int herd__mutex_lock_until(pthread_mutex_t *m, int64_t deadline_ns)
{
    if (deadline_ns < 0) {
        herd__mutex_lock(m);
        return 0;
    }
    /* pthread_mutex_timedlock takes CLOCK_REALTIME: convert what is left of the deadline. */
    int64_t left = deadline_ns - herd__clock_ns();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t at = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + (left > 0 ? left : 0);
    struct timespec ts = {.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
    int rc = pthread_mutex_timedlock(m, &ts);
    if (rc == ETIMEDOUT)
        return 1;
    check(rc, "pthread_mutex_timedlock");
    return 0;
}

void herd__mutex_unlock(pthread_mutex_t *m)
{
    check(pthread_mutex_unlock(m), "pthread_mutex_unlock");
}

void herd__cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    check(pthread_condattr_init(&attr), "pthread_condattr_init");
    check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), "pthread_condattr_setclock");
    check(pthread_cond_init(c, &attr), "pthread_cond_init");
    pthread_condattr_destroy(&attr);
}

void herd__cond_destroy(pthread_cond_t *c)
{
    check(pthread_cond_destroy(c), "pthread_cond_destroy");
}

void herd__cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    check(pthread_cond_wait(c, m), "pthread_cond_wait");
}

int herd__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000),
                          .tv_nsec = (long)(deadline_ns % 1000000000)};
    int rc = pthread_cond_timedwait(c, m, &ts);
    if (rc == 0)
        return 0;
    if (rc == ETIMEDOUT)
        return 1;
    check(rc, "pthread_cond_timedwait");
    return 0;
}

void herd__cond_signal(pthread_cond_t *c)
{
    check(pthread_cond_signal(c), "pthread_cond_signal");
}

void herd__cond_broadcast(pthread_cond_t *c)
{
    check(pthread_cond_broadcast(c), "pthread_cond_broadcast");
}

int herd__thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    /* Synchronous faults must still reach the thread that caused them. */
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    check(pthread_sigmask(SIG_BLOCK, &all, &old), "pthread_sigmask");
    int rc = pthread_create(t, NULL, fn, arg);
    check(pthread_sigmask(SIG_SETMASK, &old, NULL), "pthread_sigmask");
    if (rc == 0)
        pthread_setname_np(*t, name);
    return rc;
}

void herd__thread_join(pthread_t t)
{
    check(pthread_join(t, NULL), "pthread_join");
}

int herd__thread_join_within(pthread_t t, int64_t timeout_ns)
{
    if (timeout_ns < 0) {
        herd__thread_join(t);
        return 0;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline); /* pthread_timedjoin_np measures CLOCK_REALTIME */
    int64_t ns = (int64_t)deadline.tv_nsec + timeout_ns % 1000000000;
    deadline.tv_sec += (time_t)(timeout_ns / 1000000000 + ns / 1000000000);
    deadline.tv_nsec = (long)(ns % 1000000000);
    int rc = pthread_timedjoin_np(t, NULL, &deadline);
    if (rc == ETIMEDOUT)
        return 1;
    check(rc, "pthread_timedjoin_np");
    return 0;
}
