/* util/clock.h - monotonic time. */
#ifndef HERD_UTIL_CLOCK_H
#define HERD_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
int64_t herd__clock_ns(void);

/* The CLOCK_MONOTONIC deadline `ns_from_now` ahead, for pthread_cond_timedwait on a condvar
 * created with herd__cond_init_monotonic. */
struct timespec herd__clock_deadline(int64_t ns_from_now);

#endif
