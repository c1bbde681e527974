/*
 * A stand-in for a framework's compiled op (a PyTorch or TensorFlow custom-op library): it calls
 * herd's C API but is linked WITHOUT libherd. Its herd_* references stay undefined in the .so
 * and are resolved at dlopen time against the libherd that `import herd` loaded with
 * RTLD_GLOBAL, so the framework and Python share one libherd: one coordinator, one handle table.
 * test_plugin.py loads it with ctypes after importing herd.
 *
 * Copyright 2026 The herd authors. SPDX-License-Identifier: Apache-2.0
 */
#include <herd.h>

#define PLUGIN_API __attribute__((visibility("default")))

PLUGIN_API int plugin_rank(void);
PLUGIN_API int plugin_allreduce_f32(const char *name, float *buf, int64_t count, int op);
PLUGIN_API int plugin_broadcast_i64(const char *name, int64_t *buf, int64_t count, int root);

/* The rank as the process's libherd sees it: proves the symbols resolve to the initialised
 * instance, not to a second copy. */
PLUGIN_API int plugin_rank(void)
{
    return herd_rank();
}

/* In-place allreduce of `count` floats, waited on here: returns herd's status. */
PLUGIN_API int plugin_allreduce_f32(const char *name, float *buf, int64_t count, int op)
{
    herd_handle_t handle = 0;
    int status = herd_push_pull(name, buf, buf, count, HERD_FLOAT32, op, HERD_DEVICE_CPU, &handle);
    if (status != HERD_OK) {
        return status;
    }
    return herd_wait_handle(handle, -1);
}

/* In-place broadcast of `count` int64 values from `root`, waited on here. */
PLUGIN_API int plugin_broadcast_i64(const char *name, int64_t *buf, int64_t count, int root)
{
    herd_handle_t handle = 0;
    int status = herd_broadcast(name, buf, count, HERD_INT64, root, HERD_DEVICE_CPU, &handle);
    if (status != HERD_OK) {
        return status;
    }
    return herd_wait_handle(handle, -1);
}
