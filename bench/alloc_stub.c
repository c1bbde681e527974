/* alloc_stub.c - sanitizer builds: the sanitizer runtime owns malloc, so nothing is counted and
 * the bench reports allocations as unavailable. */
#include <string.h>

#include "bench.h"

int bench_alloc_compiled(void)
{
    return 0;
}

int bench_alloc_track_library(const char *name_part)
{
    (void)name_part;
    return 0;
}

void bench_alloc_read(bench_alloc_t *out)
{
    memset(out, 0, sizeof *out);
}
