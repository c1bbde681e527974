/* config.c - parses HERD_* environment variables once; rejects bad values with their name. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herd.h"
#include "status.h"

enum {
    DEFAULT_FUSION_THRESHOLD = 64 << 20,
    DEFAULT_CHUNK_BYTES = 1 << 20,
    DEFAULT_MAX_HANDLES = 1 << 16,
    DEFAULT_SPIN_US = 0,
    DEFAULT_WAIT_SPIN_US = 100,
    DEFAULT_IDLE_POLL_US = 20000,
    DEFAULT_STALL_WARNING_MS = 60 * 1000,
    DEFAULT_STALL_TIMEOUT_MS = 300 * 1000,
    DEFAULT_SHUTDOWN_TIMEOUT_MS = 60 * 1000,
    DEFAULT_SHM_BYTES = 4 << 20,
    MIN_SHM_BYTES = 16384, /* HERD_SHM_MIN_REGION */
};

static int bad_value(const char *var, const char *value, const char *expected);

int64_t herd__config_group_limit(const herd_config_t *cfg, int gpu)
{
    if (!gpu && cfg->chunk_bytes > 0 && cfg->chunk_bytes < cfg->fusion_threshold)
        return cfg->chunk_bytes;
    return cfg->fusion_threshold;
}

void herd__config_defaults(herd_config_t *cfg)
{
    cfg->fusion_threshold = DEFAULT_FUSION_THRESHOLD;
    cfg->chunk_bytes = DEFAULT_CHUNK_BYTES;
    cfg->log_level = HERD_LOG_WARN;
    cfg->max_handles = DEFAULT_MAX_HANDLES;
    cfg->spin_us = DEFAULT_SPIN_US;
    cfg->wait_spin_us = DEFAULT_WAIT_SPIN_US;
    cfg->idle_poll_us = DEFAULT_IDLE_POLL_US;
    cfg->stall_warning_ms = DEFAULT_STALL_WARNING_MS;
    cfg->stall_timeout_ms = DEFAULT_STALL_TIMEOUT_MS;
    cfg->shutdown_timeout_ms = DEFAULT_SHUTDOWN_TIMEOUT_MS;
    cfg->timeline[0] = '\0';
    cfg->gpu_backend = HERD_GPU_BACKEND_NCCL;
    cfg->shm = 1;
    cfg->shm_bytes = DEFAULT_SHM_BYTES;
    cfg->shm_hierarchical = 1;
    cfg->shm_stream_stores = 2;
}

int herd__config_parse_seconds(const char *text, int64_t *ms_out)
{
    /* Digits with at most one '.': strtod alone would take hex, exponents and "inf". */
    int dots = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '.')
            dots++;
        else if (*p < '0' || *p > '9')
            return -1;
    }
    if (text[0] < '0' || text[0] > '9' || dots > 1)
        return -1;
    errno = 0;
    char *end = NULL;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0.0) || v > 1e9)
        return -1;
    *ms_out = (int64_t)(v * 1000.0 + 0.5);
    return 0;
}

static int read_seconds(herd_env_lookup_fn lookup, const char *var, int64_t *ms_out)
{
    const char *value = lookup(var);
    if (value == NULL)
        return 0;
    if (herd__config_parse_seconds(value, ms_out) != 0)
        return bad_value(var, value, "a number of seconds from 0 to 1e9 (e.g. 60 or 0.5)");
    return 0;
}

static int parse_int64(const char *text, int64_t *out, const char **rest)
{
    /* A digit first: strtoll alone would skip any white space and take a sign. */
    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text)
        return -1;
    *out = (int64_t)v;
    *rest = end;
    return 0;
}

int herd__config_parse_bytes(const char *text, int64_t *out)
{
    int64_t v = 0;
    const char *rest = NULL;
    if (parse_int64(text, &v, &rest) != 0)
        return -1;
    int shift = 0;
    switch (*rest) {
    case 'k': case 'K': shift = 10; rest++; break;
    case 'm': case 'M': shift = 20; rest++; break;
    case 'g': case 'G': shift = 30; rest++; break;
    default: break;
    }
    if (shift != 0 && (strcasecmp(rest, "ib") == 0 || strcasecmp(rest, "b") == 0))
        rest += strlen(rest);
    else if (shift == 0 && strcasecmp(rest, "b") == 0)
        rest += 1;
    if (*rest != '\0')
        return -1;
    if (v > (INT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

static int parse_log_level(const char *text, int *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, names[i]) == 0 || (text[0] == '0' + i && text[1] == '\0')) {
            *out = i;
            return 0;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *out = HERD_LOG_WARN;
        return 0;
    }
    return -1;
}

static int bad_value(const char *var, const char *value, const char *expected)
{
    return herd__status_set(HERD_ERR_INVALID_ARG, "%s='%.200s%s' is not valid: expected %s",
                            var, value, strlen(value) > 200 ? "..." : "", expected);
}

/* Parses an integer variable in [lo, hi]; absent leaves *out unchanged. */
static int read_range(herd_env_lookup_fn lookup, const char *var, int64_t lo, int64_t hi,
                      int bytes, int64_t *out)
{
    const char *value = lookup(var);
    if (value == NULL)
        return 0;
    int64_t v = 0;
    const char *rest = NULL;
    int rc = bytes ? herd__config_parse_bytes(value, &v)
                   : (parse_int64(value, &v, &rest) == 0 && *rest == '\0' ? 0 : -1);
    if (rc != 0 || v < lo || v > hi) {
        char expected[128];
        snprintf(expected, sizeof expected, "%s from %lld to %lld",
                 bytes ? "a byte size (suffix K, M or G allowed)" : "an integer", (long long)lo,
                 (long long)hi);
        return bad_value(var, value, expected);
    }
    *out = v;
    return 0;
}

int herd__config_parse(herd_config_t *cfg, herd_env_lookup_fn lookup)
{
    herd_config_t c;
    herd__config_defaults(&c);
    herd__config_defaults(cfg);

    int64_t max_handles = c.max_handles;
    int64_t shm = c.shm, hier = c.shm_hierarchical, stream = c.shm_stream_stores;
    int rc = read_range(lookup, "HERD_FUSION_THRESHOLD", 0, INT64_C(1) << 40, 1,
                        &c.fusion_threshold);
    if (rc == 0)
        rc = read_range(lookup, "HERD_CHUNK_BYTES", 0, INT64_C(1) << 40, 1, &c.chunk_bytes);
    if (rc == 0)
        rc = read_range(lookup, "HERD_MAX_HANDLES", 16, 1 << 22, 0, &max_handles);
    if (rc == 0)
        rc = read_range(lookup, "HERD_SPIN_US", 0, 1000000, 0, &c.spin_us);
    if (rc == 0)
        rc = read_range(lookup, "HERD_WAIT_SPIN_US", 0, 1000000, 0, &c.wait_spin_us);
    if (rc == 0)
        rc = read_range(lookup, "HERD_IDLE_POLL_US", 1, 1000000, 0, &c.idle_poll_us);
    if (rc == 0)
        rc = read_range(lookup, "HERD_SHM", 0, 1, 0, &shm);
    if (rc == 0)
        rc = read_range(lookup, "HERD_HIERARCHICAL_ALLREDUCE", 0, 1, 0, &hier);
    if (rc == 0)
        rc = read_range(lookup, "HERD_SHM_STREAM_STORES", 0, 2, 0, &stream);
    if (rc == 0)
        rc = read_range(lookup, "HERD_SHM_BYTES", MIN_SHM_BYTES, INT64_C(1) << 32, 1,
                        &c.shm_bytes);
    if (rc == 0)
        rc = read_seconds(lookup, "HERD_STALL_WARNING_SECONDS", &c.stall_warning_ms);
    if (rc == 0)
        rc = read_seconds(lookup, "HERD_STALL_TIMEOUT_SECONDS", &c.stall_timeout_ms);
    if (rc == 0)
        rc = read_seconds(lookup, "HERD_SHUTDOWN_TIMEOUT_SECONDS", &c.shutdown_timeout_ms);
    if (rc == 0) {
        const char *path = lookup("HERD_TIMELINE");
        if (path != NULL && strlen(path) >= sizeof c.timeline)
            rc = bad_value("HERD_TIMELINE", path, "a path shorter than 1024 bytes");
        else if (path != NULL)
            memcpy(c.timeline, path, strlen(path) + 1);
    }
    if (rc == 0) {
        const char *gpu = lookup("HERD_GPU_BACKEND");
        if (gpu != NULL && strcasecmp(gpu, "nccl") == 0)
            c.gpu_backend = HERD_GPU_BACKEND_NCCL;
        else if (gpu != NULL && strcasecmp(gpu, "mpi") == 0)
            c.gpu_backend = HERD_GPU_BACKEND_MPI;
        else if (gpu != NULL)
            rc = bad_value("HERD_GPU_BACKEND", gpu, "nccl or mpi");
    }
    if (rc == 0) {
        const char *level = lookup("HERD_LOG_LEVEL");
        if (level != NULL && parse_log_level(level, &c.log_level) != 0)
            rc = bad_value("HERD_LOG_LEVEL", level, "error, warn, info, debug or 0-3");
    }
    if (rc != 0)
        return rc;
    c.max_handles = (int)max_handles;
    c.shm = (int)shm;
    c.shm_hierarchical = (int)hier;
    c.shm_stream_stores = (int)stream;
    *cfg = c;
    return HERD_OK;
}
