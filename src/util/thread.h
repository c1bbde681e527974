/* util/thread.h - pthread wrappers. A failing pthread call is a broken invariant, not a user's
 * mistake, so these abort with a message instead of returning a status. */
#ifndef HERD_UTIL_THREAD_H
#define HERD_UTIL_THREAD_H

#include <pthread.h>
#include <stdint.h>

void herd__mutex_init(pthread_mutex_t *m);
void herd__mutex_destroy(pthread_mutex_t *m);
void herd__mutex_lock(pthread_mutex_t *m);
void herd__mutex_unlock(pthread_mutex_t *m);
/* Locks `m` unless `deadline_ns` (herd__clock_ns; < 0: none) passes first: 0 when locked, 1 on
 * timeout. */
int herd__mutex_lock_until(pthread_mutex_t *m, int64_t deadline_ns);

/* A condition variable that times out on CLOCK_MONOTONIC, so wall-clock jumps do not matter. */
void herd__cond_init_monotonic(pthread_cond_t *c);
void herd__cond_destroy(pthread_cond_t *c);
void herd__cond_wait(pthread_cond_t *c, pthread_mutex_t *m);
/* Returns 0 when signalled (or spuriously woken), 1 when `deadline_ns` (herd__clock_ns) passed. */
int herd__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns);
void herd__cond_signal(pthread_cond_t *c);
void herd__cond_broadcast(pthread_cond_t *c);

/* Starts a thread with every asynchronous signal blocked (signals go to the application's
 * threads) and names it. Returns 0 or an errno value. */
int herd__thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg);
void herd__thread_join(pthread_t t);

/* Joins `t` if it ends within `timeout_ns` (< 0: wait forever): returns 0, or 1 on timeout,
 * when the thread is left running. */
int herd__thread_join_within(pthread_t t, int64_t timeout_ns);

/* One step of a spin-wait on another core's store: tells the CPU this is a spin loop. */
static inline void herd__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

#endif
