/* alloc_count.c - a counting allocator, interposed in the bench executable only.
 *
 * The executable defines malloc and friends; the dynamic linker resolves every shared object's
 * calls to them (libherd, libmpi, libc itself) to these definitions, which count with relaxed
 * atomics and forward to glibc's own allocator (__libc_malloc etc.). glibc supports replacing
 * malloc this way. Counting covers every thread of the process: the caller's, herd's
 * coordinator and MPI's own. Calls made directly from one library's code (libherd: the return
 * address lies in its executable segment) are also counted apart, so herd's own allocations can
 * be told from MPI's. Sanitizer builds leave this file out (the sanitizer owns malloc).
 */
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);
extern void __libc_free(void *p);

static atomic_uint_fast64_t n_allocs;
static atomic_uint_fast64_t n_frees;
static atomic_uint_fast64_t n_bytes;
static atomic_uint_fast64_t n_lib_allocs;
static atomic_uint_fast64_t n_lib_bytes;
static uintptr_t lib_lo, lib_size; /* set once at start, before any thread of interest runs */

/* Inlined into each entry point so the return address is the allocator's caller. */
#define COUNT(bytes)                                                                           \
    do {                                                                                       \
        size_t b_ = (bytes);                                                                   \
        atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);                         \
        atomic_fetch_add_explicit(&n_bytes, b_, memory_order_relaxed);                         \
        if ((uintptr_t)__builtin_return_address(0) - lib_lo < lib_size) {                      \
            atomic_fetch_add_explicit(&n_lib_allocs, 1, memory_order_relaxed);                 \
            atomic_fetch_add_explicit(&n_lib_bytes, b_, memory_order_relaxed);                 \
        }                                                                                      \
    } while (0)

static int find_library(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (info->dlpi_name == NULL || strstr(info->dlpi_name, (const char *)data) == NULL)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            lib_lo = (uintptr_t)(info->dlpi_addr + ph->p_vaddr);
            lib_size = (uintptr_t)ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

int bench_alloc_track_library(const char *name_part)
{
    return dl_iterate_phdr(find_library, (void *)name_part) == 1;
}

int bench_alloc_compiled(void)
{
    return 1;
}

void bench_alloc_read(bench_alloc_t *out)
{
    out->allocs = atomic_load_explicit(&n_allocs, memory_order_relaxed);
    out->frees = atomic_load_explicit(&n_frees, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&n_bytes, memory_order_relaxed);
    out->lib_allocs = atomic_load_explicit(&n_lib_allocs, memory_order_relaxed);
    out->lib_bytes = atomic_load_explicit(&n_lib_bytes, memory_order_relaxed);
}

void *malloc(size_t size)
{
    COUNT(size);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    COUNT(n * size);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    COUNT(size);
    return __libc_realloc(p, size);
}

void free(void *p)
{
    if (p != NULL)
        atomic_fetch_add_explicit(&n_frees, 1, memory_order_relaxed);
    __libc_free(p);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    COUNT(size);
    void *p = __libc_memalign(alignment, size);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size)
{
    COUNT(size);
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size)
{
    COUNT(size);
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size)
{
    COUNT(size);
    return __libc_valloc(size);
}

void *pvalloc(size_t size)
{
    COUNT(size);
    return __libc_pvalloc(size);
}
