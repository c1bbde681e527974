/* test_fake_late.c - the host-memory check notices a CUDA driver loaded after herd looked.
 *
 * herd asks whether a CUDA driver is in the process before it checks a host pointer, and
 * remembers "no" until the loader has loaded something new. This program (one rank, not linked
 * to any CUDA library) submits a host op while no driver is loaded, then loads the fake driver
 * (HERD_CUDA_DRIVER_LIBRARY, tests/gpu/fake_cuda.c), allocates "device" memory from it, and
 * passes that as HERD_DEVICE_CPU: herd must refuse it. Exit status 0 when it did. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "herd.h"

typedef int (*set_device_fn)(int);
typedef int (*malloc_fn)(void **, size_t);

static int fail(const char *what)
{
    fprintf(stderr, "gpu_fake_late: %s\n", what);
    herd_shutdown();
    return 1;
}

int main(void)
{
    const char *fake = getenv("HERD_CUDA_DRIVER_LIBRARY");
    if (fake == NULL) {
        fprintf(stderr, "gpu_fake_late: HERD_CUDA_DRIVER_LIBRARY is not set\n");
        return 1;
    }
    if (herd_init() != HERD_OK) {
        fprintf(stderr, "gpu_fake_late: herd_init: %s\n", herd_last_error());
        return 1;
    }
    float host[4] = {1, 2, 3, 4};
    herd_handle_t h = 0;
    if (herd_push_pull("late.host", host, host, 4, HERD_FLOAT32, HERD_SUM, HERD_DEVICE_CPU,
                       &h) != HERD_OK ||
        herd_wait_handle(h, -1) != HERD_OK || host[3] != 4.0f * (float)herd_size())
        return fail("a host op before any CUDA library was loaded failed");
    /* MPI is loaded already (herd needs it), so the fake's MPI references resolve. */
    void *lib = dlopen(fake, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return fail(dlerror());
    set_device_fn set_device = (set_device_fn)dlsym(lib, "cudaSetDevice");
    malloc_fn dev_malloc = (malloc_fn)dlsym(lib, "cudaMalloc");
    void *dev = NULL;
    if (set_device == NULL || dev_malloc == NULL || set_device(0) != 0 ||
        dev_malloc(&dev, 64) != 0)
        return fail("the fake CUDA library did not allocate");
    int rc = herd_push_pull("late.device_as_host", dev, dev, 4, HERD_FLOAT32, HERD_SUM,
                            HERD_DEVICE_CPU, &h);
    if (rc != HERD_ERR_INVALID_ARG) {
        fprintf(stderr, "gpu_fake_late: device memory as host memory after the driver was loaded: "
                        "got %s, want HERD_ERR_INVALID_ARG\n", herd_status_name(rc));
        herd_shutdown();
        return 1;
    }
    printf("gpu_fake_late: refused as it should: %s\n", herd_last_error());
    return herd_shutdown() == HERD_OK ? 0 : 1;
}
