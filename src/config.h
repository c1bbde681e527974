/* config.h - every HERD_* tunable, parsed once at init. */
#ifndef HERD_CONFIG_H
#define HERD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* HERD_GPU_BACKEND: NCCL when built with it, else (or when set to mpi) staging through host
 * memory and MPI. */
enum { HERD_GPU_BACKEND_NCCL = 0, HERD_GPU_BACKEND_MPI = 1 };

/* Log levels, lowest is quietest. */
enum { HERD_LOG_ERROR = 0, HERD_LOG_WARN = 1, HERD_LOG_INFO = 2, HERD_LOG_DEBUG = 3 };

typedef struct herd_config {
    int64_t fusion_threshold; /* HERD_FUSION_THRESHOLD: bytes; tensors below it are fused */
    int64_t chunk_bytes;      /* HERD_CHUNK_BYTES: pieces of one collective; 0 = one call */
    int log_level;            /* HERD_LOG_LEVEL */
    int max_handles;          /* HERD_MAX_HANDLES: operations in flight per process */
    int64_t spin_us;          /* HERD_SPIN_US: coordinator spins this long before sleeping */
    int64_t wait_spin_us;     /* HERD_WAIT_SPIN_US: a driving waiter looks for peers this long */
    int64_t idle_poll_us;     /* HERD_IDLE_POLL_US: longest sleep between wake checks */
    int64_t stall_warning_ms; /* HERD_STALL_WARNING_SECONDS: 0 = no warnings */
    int64_t stall_timeout_ms; /* HERD_STALL_TIMEOUT_SECONDS: 0 = never time out */
    int64_t shutdown_timeout_ms; /* HERD_SHUTDOWN_TIMEOUT_SECONDS: 0 = wait forever */
    char timeline[1024];         /* HERD_TIMELINE: trace path ("" = none; %r = rank) */
    int gpu_backend;             /* HERD_GPU_BACKEND: nccl or mpi */
    int shm;                     /* HERD_SHM: 1 = intra-node shared-memory plane, 0 = MPI only */
    int64_t shm_bytes;           /* HERD_SHM_BYTES: the plane's segment per local rank */
    int shm_hierarchical;        /* HERD_HIERARCHICAL_ALLREDUCE: the plane across hosts too */
    int shm_stream_stores;       /* HERD_SHM_STREAM_STORES: 0 regular, 1 streaming, 2 choose */
} herd_config_t;

/* Reads the configuration through `lookup` (getenv in production, a table in tests). On a bad
 * value returns HERD_ERR_INVALID_ARG with a message naming the variable, and leaves `cfg` with
 * defaults for everything. */
typedef const char *(*herd_env_lookup_fn)(const char *name);
int herd__config_parse(herd_config_t *cfg, herd_env_lookup_fn lookup);

/* The most bytes one fused group may hold: host tensors travel in buckets of HERD_CHUNK_BYTES
 * when it is set below the fusion threshold (small ones packed a bucket at a time while it is in
 * cache, big ones reduced where they lie in pieces of that size); GPU tensors fuse up to the
 * fusion threshold. Backends size their fusion buffers to it once, so that no group in a
 * training run's steady state grows one. */
int64_t herd__config_group_limit(const herd_config_t *cfg, int gpu);

/* Fills `cfg` with the defaults. */
void herd__config_defaults(herd_config_t *cfg);

/* Parses seconds: a non-negative decimal number ("2", "0.5"), into milliseconds. Returns 0 on
 * success, -1 on a malformed or out-of-range value. */
int herd__config_parse_seconds(const char *text, int64_t *ms_out);

/* Parses a byte size: a non-negative integer with an optional K, M or G suffix (powers of 1024,
 * optionally followed by "B" or "iB"). Returns 0 on success, -1 on a malformed value. */
int herd__config_parse_bytes(const char *text, int64_t *out);

#endif
