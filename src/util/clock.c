#include "util/clock.h"

int64_t herd__clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec herd__clock_deadline(int64_t ns_from_now)
{
    int64_t t = herd__clock_ns() + ns_from_now;
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000), .tv_nsec = (long)(t % 1000000000)};
    return ts;
}
