/* backend/gpu_loader.c - see gpu_loader.h. */
#include "backend/gpu_loader.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "status.h"

#define HERD_STR2(x) #x
#define HERD_STR(x) HERD_STR2(x)

/* The runtime of the major version herd was compiled against (its ABI), else the toolkit's file
 * CMake found (HERD_CUDART_FALLBACK), for a process whose loader path lacks the toolkit. */
#define DEFAULT_CUDART "libcudart.so." HERD_STR(HERD_CUDART_MAJOR)
#define DEFAULT_DRIVER "libcuda.so.1"
#define DEFAULT_NCCL "libnccl.so.2"
#ifndef HERD_CUDART_FALLBACK
#define HERD_CUDART_FALLBACK NULL
#endif
#ifndef HERD_NCCL_FALLBACK
#define HERD_NCCL_FALLBACK NULL
#endif

herd_cudart_api_t herd__cudart;
herd_cudrv_api_t herd__cudrv;

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int cuda_state;  /* 0 not tried, 1 loaded, -1 failed (guarded by load_lock) */
static atomic_int driver_state; /* 0 not loaded yet, 1 herd__cudrv filled */
static char cuda_why[HERD_ERRMSG_MAX];

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

void *herd__gpu_dlopen(const char *file, const char *fallback, char *why, size_t why_len)
{
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *first = dlerror();
        snprintf(why, why_len, "%s", first != NULL ? first : file);
        if (fallback != NULL && strcmp(fallback, file) != 0) {
            h = dlopen(fallback, RTLD_NOW | RTLD_LOCAL);
            if (h == NULL) {
                size_t used = strlen(why);
                const char *second = dlerror();
                snprintf(why + used, why_len - used, "; %s", second != NULL ? second : fallback);
            }
        }
    }
    return h;
}

/* dlsym()s each name into the table's slot; the first missing one is written to why. */
typedef struct sym {
    const char *name;
    void **slot;
} sym_t;

static int resolve(void *lib, const char *libname, const sym_t *syms, size_t n, char *why,
                   size_t why_len)
{
    for (size_t i = 0; i < n; i++) {
        void *p = dlsym(lib, syms[i].name);
        if (p == NULL) {
            snprintf(why, why_len, "%s has no %s", libname, syms[i].name);
            return -1;
        }
        *syms[i].slot = p;
    }
    return 0;
}

#define SLOT(table, field, name) {name, (void **)&(table).field}

static int resolve_driver(void *lib, const char *libname, char *why, size_t why_len)
{
    herd_cudrv_api_t t;
    const sym_t syms[] = {
        SLOT(t, Init, "cuInit"),
        SLOT(t, DeviceGet, "cuDeviceGet"),
        SLOT(t, DevicePrimaryCtxGetState, "cuDevicePrimaryCtxGetState"),
        SLOT(t, CtxGetCurrent, "cuCtxGetCurrent"),
        SLOT(t, CtxSetCurrent, "cuCtxSetCurrent"),
        SLOT(t, CtxGetDevice, "cuCtxGetDevice"),
        SLOT(t, PointerGetAttributes, "cuPointerGetAttributes"),
    };
    if (resolve(lib, libname, syms, sizeof syms / sizeof syms[0], why, why_len) != 0)
        return -1;
    herd__cudrv = t;
    return 0;
}

/* The loader's count of objects ever loaded into the process (first object only: O(1)). */
static int count_adds(struct dl_phdr_info *info, size_t size, void *data)
{
    unsigned long long *adds = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof info->dlpi_adds)
        *adds = info->dlpi_adds;
    return 1;
}

/* dlpi_adds when the driver was last found absent (0: never looked). */
static atomic_ullong absent_at_adds;

int herd__gpu_driver_present(void)
{
    if (atomic_load(&driver_state) == 1)
        return 1;
    /* This runs on every host submission of a process without CUDA: a dlopen that misses searches
     * the library path, so it is repeated only once something new was loaded. */
    unsigned long long adds = 0;
    dl_iterate_phdr(count_adds, &adds);
    if (adds != 0 && adds == atomic_load(&absent_at_adds))
        return 0;
    const char *name = env_or("HERD_CUDA_DRIVER_LIBRARY", DEFAULT_DRIVER);
    /* RTLD_NOLOAD: only a driver some CUDA user already brought in. Without one, no memory of
     * this process can be device memory, and nothing is loaded or initialised. */
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (lib == NULL) {
        atomic_store(&absent_at_adds, adds);
        return 0;
    }
    char why[256];
    pthread_mutex_lock(&load_lock);
    int ok = atomic_load(&driver_state) == 1 || resolve_driver(lib, name, why, sizeof why) == 0;
    if (ok)
        atomic_store(&driver_state, 1);
    pthread_mutex_unlock(&load_lock);
    if (!ok)
        dlclose(lib);
    return ok;
}

static int load_cuda_locked(void)
{
    const char *name = env_or("HERD_CUDART_LIBRARY", DEFAULT_CUDART);
    char why[HERD_ERRMSG_MAX - 128];
    void *lib = herd__gpu_dlopen(name, getenv("HERD_CUDART_LIBRARY") != NULL ? NULL
                                                                             : HERD_CUDART_FALLBACK,
                                 why, sizeof why);
    if (lib == NULL) {
        snprintf(cuda_why, sizeof cuda_why, "the CUDA runtime could not be loaded: %s", why);
        return -1;
    }
    herd_cudart_api_t t;
    const sym_t syms[] = {
        SLOT(t, GetDeviceCount, "cudaGetDeviceCount"),
        SLOT(t, GetDevice, "cudaGetDevice"),
        SLOT(t, SetDevice, "cudaSetDevice"),
        SLOT(t, GetLastError, "cudaGetLastError"),
        SLOT(t, GetErrorString, "cudaGetErrorString"),
        SLOT(t, GetErrorName, "cudaGetErrorName"),
        SLOT(t, EventCreateWithFlags, "cudaEventCreateWithFlags"),
        SLOT(t, EventRecord, "cudaEventRecord"),
        SLOT(t, EventQuery, "cudaEventQuery"),
        SLOT(t, EventDestroy, "cudaEventDestroy"),
        SLOT(t, StreamCreateWithFlags, "cudaStreamCreateWithFlags"),
        SLOT(t, StreamWaitEvent, "cudaStreamWaitEvent"),
        SLOT(t, StreamSynchronize, "cudaStreamSynchronize"),
        SLOT(t, StreamQuery, "cudaStreamQuery"),
        SLOT(t, StreamDestroy, "cudaStreamDestroy"),
        SLOT(t, MemcpyAsync, "cudaMemcpyAsync"),
        SLOT(t, Malloc, "cudaMalloc"),
        SLOT(t, Free, "cudaFree"),
        SLOT(t, MallocHost, "cudaMallocHost"),
        SLOT(t, FreeHost, "cudaFreeHost"),
    };
    if (resolve(lib, name, syms, sizeof syms / sizeof syms[0], why, sizeof why) != 0) {
        snprintf(cuda_why, sizeof cuda_why, "the CUDA runtime is not usable: %s", why);
        dlclose(lib);
        return -1;
    }
    /* The runtime has loaded the driver by now (its first call does); a runtime without one
     * still loads, and then sees no device. */
    const char *drv = env_or("HERD_CUDA_DRIVER_LIBRARY", DEFAULT_DRIVER);
    void *dlib = herd__gpu_dlopen(drv, NULL, why, sizeof why);
    if (dlib == NULL || resolve_driver(dlib, drv, why, sizeof why) != 0) {
        snprintf(cuda_why, sizeof cuda_why, "the CUDA driver could not be loaded: %s", why);
        if (dlib != NULL)
            dlclose(dlib);
        dlclose(lib);
        return -1;
    }
    herd__cudart = t;
    atomic_store(&driver_state, 1);
    return 0;
}

int herd__gpu_load_cuda(void)
{
    int state = atomic_load(&cuda_state);
    if (state == 0) {
        pthread_mutex_lock(&load_lock);
        state = atomic_load(&cuda_state);
        if (state == 0) {
            state = load_cuda_locked() == 0 ? 1 : -1;
            atomic_store(&cuda_state, state);
        }
        pthread_mutex_unlock(&load_lock);
    }
    if (state == 1)
        return HERD_OK;
    return herd__status_set(HERD_ERR_NOT_SUPPORTED, "%s", cuda_why);
}

#ifdef HERD_HAVE_NCCL
herd_nccl_api_t herd__nccl;
static int nccl_state; /* 0 not tried, 1 loaded, -1 failed (guarded by load_lock) */
static char nccl_why[HERD_ERRMSG_MAX];

static int load_nccl_locked(void)
{
    const char *name = env_or("HERD_NCCL_LIBRARY", DEFAULT_NCCL);
    char why[HERD_ERRMSG_MAX - 128];
    void *lib = herd__gpu_dlopen(name, getenv("HERD_NCCL_LIBRARY") != NULL ? NULL
                                                                          : HERD_NCCL_FALLBACK,
                                 why, sizeof why);
    if (lib == NULL) {
        snprintf(nccl_why, sizeof nccl_why, "NCCL could not be loaded: %s", why);
        return -1;
    }
    herd_nccl_api_t t;
    const sym_t syms[] = {
        SLOT(t, GetVersion, "ncclGetVersion"),
        SLOT(t, GetErrorString, "ncclGetErrorString"),
        SLOT(t, GetUniqueId, "ncclGetUniqueId"),
        SLOT(t, CommInitRank, "ncclCommInitRank"),
        SLOT(t, CommDestroy, "ncclCommDestroy"),
        SLOT(t, CommAbort, "ncclCommAbort"),
        SLOT(t, CommGetAsyncError, "ncclCommGetAsyncError"),
        SLOT(t, AllReduce, "ncclAllReduce"),
        SLOT(t, Broadcast, "ncclBroadcast"),
        SLOT(t, AllGather, "ncclAllGather"),
        SLOT(t, ReduceScatter, "ncclReduceScatter"),
        SLOT(t, Send, "ncclSend"),
        SLOT(t, Recv, "ncclRecv"),
        SLOT(t, GroupStart, "ncclGroupStart"),
        SLOT(t, GroupEnd, "ncclGroupEnd"),
        SLOT(t, RedOpCreatePreMulSum, "ncclRedOpCreatePreMulSum"),
        SLOT(t, RedOpDestroy, "ncclRedOpDestroy"),
    };
    if (resolve(lib, name, syms, sizeof syms / sizeof syms[0], why, sizeof why) != 0) {
        snprintf(nccl_why, sizeof nccl_why, "NCCL is not usable: %s", why);
        dlclose(lib);
        return -1;
    }
    int version = 0;
    if (t.GetVersion(&version) != ncclSuccess || version < HERD_NCCL_MIN_VERSION) {
        snprintf(nccl_why, sizeof nccl_why,
                 "%s is NCCL version code %d; herd needs %d (2.11) or later, for ncclAvg, "
                 "bfloat16 and PreMulSum", name, version, (int)HERD_NCCL_MIN_VERSION);
        dlclose(lib);
        return -1;
    }
    herd__nccl = t;
    return 0;
}

int herd__gpu_load_nccl(void)
{
    pthread_mutex_lock(&load_lock);
    if (nccl_state == 0)
        nccl_state = load_nccl_locked() == 0 ? 1 : -1;
    int state = nccl_state;
    pthread_mutex_unlock(&load_lock);
    if (state == 1)
        return HERD_OK;
    return herd__status_set(HERD_ERR_BACKEND, "%s", nccl_why);
}
#endif
