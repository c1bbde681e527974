/* backend/gpu_none.c - the GPU interface in a build without the CUDA toolkit. */
#include "backend/gpu.h"
#include "herd.h"
#include "status.h"

int herd__gpu_init(uint32_t capacity)
{
    (void)capacity;
    return HERD_OK;
}

void herd__gpu_fini(void) {}

int herd__gpu_check_buffer(const char *name, const char *what, const void *buf, int device)
{
    (void)what;
    (void)buf;
    if (device >= 0)
        return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                                "tensor '%s': device %d is a GPU, and this build of herd has no "
                                "GPU support (configure with the CUDA toolkit and NCCL)",
                                name, device);
    return HERD_OK;
}

int herd__gpu_record_ready(uint32_t index, int device, void *stream)
{
    (void)index;
    (void)device;
    (void)stream;
    return herd__status_set(HERD_ERR_NOT_SUPPORTED, "this build of herd has no GPU support");
}

int herd__gpu_stream_wait(uint32_t index, void *stream)
{
    (void)index;
    (void)stream;
    return herd__status_set(HERD_ERR_NOT_SUPPORTED, "this build of herd has no GPU support");
}

int herd__gpu_backend_create(herd_backend_t **out, herd_ctrl_t *ctrl, const herd_config_t *cfg,
                             int device, herd_backend_t *host)
{
    (void)out;
    (void)ctrl;
    (void)cfg;
    (void)device;
    (void)host;
    return herd__status_set(HERD_ERR_NOT_SUPPORTED, "this build of herd has no GPU support");
}

int herd__gpu_free(void *ptr, int device)
{
    (void)ptr;
    return herd__status_set(HERD_ERR_NOT_SUPPORTED,
                            "herd_free: device %d is a GPU, and this build of herd has no GPU "
                            "support", device);
}
