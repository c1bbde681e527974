/* fuzz_config.c - libFuzzer target for the HERD_* parsers: herd__config_parse through a lookup
 * function over a table of variables, and herd__config_parse_bytes / _seconds directly.
 *
 * Input layout (fuzz/make_corpus.c writes examples): fields separated by NUL bytes. Field i is
 * the value of variable i of `vars` below; a field that starts with 0x7f leaves that variable
 * unset, and so do missing fields. Every field is also fed to the byte-size and seconds parsers
 * as it stands. Each value lives in a heap block of exactly its length plus the NUL, so ASan
 * sees a read past the end. Any broken invariant aborts. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "herd.h"
#include "status.h"

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_config: invariant broken at %s:%d: %s\n", __FILE__,         \
                    __LINE__, #cond);                                                          \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static const char *const vars[] = {
    "HERD_FUSION_THRESHOLD",      "HERD_CHUNK_BYTES",           "HERD_MAX_HANDLES",
    "HERD_SPIN_US",               "HERD_IDLE_POLL_US",          "HERD_STALL_WARNING_SECONDS",
    "HERD_STALL_TIMEOUT_SECONDS", "HERD_SHUTDOWN_TIMEOUT_SECONDS", "HERD_TIMELINE",
    "HERD_GPU_BACKEND",           "HERD_LOG_LEVEL",             "HERD_WAIT_SPIN_US",
};
enum { NVARS = sizeof vars / sizeof vars[0], MAX_FIELDS = 32 };

/* The lookup function has no context argument: the table is a global, as getenv's is. */
static char *values[NVARS];
static int lookups;

static const char *lookup(const char *name)
{
    CHECK(name != NULL);
    lookups++;
    for (int i = 0; i < NVARS; i++)
        if (strcmp(name, vars[i]) == 0)
            return values[i];
    return NULL;
}

static void check_bytes(const char *text)
{
    int64_t v = -1;
    if (herd__config_parse_bytes(text, &v) != 0)
        return;
    CHECK(v >= 0);
    /* Its plain decimal form parses back to the same number. */
    char again[32];
    snprintf(again, sizeof again, "%" PRId64, v);
    int64_t w = -1;
    CHECK(herd__config_parse_bytes(again, &w) == 0 && w == v);
}

static void check_seconds(const char *text)
{
    int64_t ms = -1;
    if (herd__config_parse_seconds(text, &ms) != 0)
        return;
    CHECK(ms >= 0 && ms <= INT64_C(1000000000000));
    char again[48];
    snprintf(again, sizeof again, "%" PRId64 ".%03" PRId64, ms / 1000, ms % 1000);
    int64_t back = -1;
    CHECK(herd__config_parse_seconds(again, &back) == 0 && back == ms);
}

static void check_config(const herd_config_t *c)
{
    CHECK(c->fusion_threshold >= 0 && c->fusion_threshold <= (INT64_C(1) << 40));
    CHECK(c->chunk_bytes >= 0 && c->chunk_bytes <= (INT64_C(1) << 40));
    CHECK(c->max_handles >= 16 && c->max_handles <= (1 << 22));
    CHECK(c->spin_us >= 0 && c->spin_us <= 1000000);
    CHECK(c->wait_spin_us >= 0 && c->wait_spin_us <= 1000000);
    CHECK(c->idle_poll_us >= 1 && c->idle_poll_us <= 1000000);
    CHECK(c->stall_warning_ms >= 0 && c->stall_timeout_ms >= 0 && c->shutdown_timeout_ms >= 0);
    CHECK(c->log_level >= HERD_LOG_ERROR && c->log_level <= HERD_LOG_DEBUG);
    CHECK(c->gpu_backend == HERD_GPU_BACKEND_NCCL || c->gpu_backend == HERD_GPU_BACKEND_MPI);
    CHECK(memchr(c->timeline, '\0', sizeof c->timeline) != NULL);
}

/* Field by field: the struct has padding, and the timeline's bytes after its NUL are noise. */
static int same_config(const herd_config_t *a, const herd_config_t *b)
{
    return a->fusion_threshold == b->fusion_threshold && a->chunk_bytes == b->chunk_bytes &&
           a->log_level == b->log_level && a->max_handles == b->max_handles &&
           a->spin_us == b->spin_us && a->wait_spin_us == b->wait_spin_us &&
           a->idle_poll_us == b->idle_poll_us &&
           a->stall_warning_ms == b->stall_warning_ms &&
           a->stall_timeout_ms == b->stall_timeout_ms &&
           a->shutdown_timeout_ms == b->shutdown_timeout_ms &&
           strcmp(a->timeline, b->timeline) == 0 && a->gpu_backend == b->gpu_backend;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *fields[MAX_FIELDS];
    int nfields = 0;
    size_t start = 0;
    while (start <= size && nfields < MAX_FIELDS) {
        const uint8_t *nul = memchr(data + start, 0, size - start);
        size_t len = nul ? (size_t)(nul - (data + start)) : size - start;
        char *f = malloc(len + 1);
        CHECK(f != NULL);
        memcpy(f, data + start, len);
        f[len] = '\0';
        fields[nfields++] = f;
        start += len + 1;
    }
    for (int i = 0; i < nfields; i++) {
        check_bytes(fields[i]);
        check_seconds(fields[i]);
    }
    for (int i = 0; i < NVARS; i++)
        values[i] = i < nfields && (unsigned char)fields[i][0] != 0x7f ? fields[i] : NULL;

    herd_config_t cfg, defaults;
    herd__config_defaults(&defaults);
    memset(&cfg, 0xa5, sizeof cfg);
    herd__status_clear();
    lookups = 0;
    int rc = herd__config_parse(&cfg, lookup);
    CHECK(lookups > 0);
    if (rc == HERD_OK) {
        check_config(&cfg);
        /* A value that was set and accepted is what the parser stored. */
        if (values[8] != NULL)
            CHECK(strcmp(cfg.timeline, values[8]) == 0);
    } else {
        CHECK(rc == HERD_ERR_INVALID_ARG);
        /* A refused configuration leaves every field at its default... */
        CHECK(same_config(&cfg, &defaults));
        /* ...and the message names a variable that was set. */
        const char *msg = herd__status_last();
        int named = 0;
        for (int i = 0; i < NVARS; i++)
            if (values[i] != NULL && strncmp(msg, vars[i], strlen(vars[i])) == 0 &&
                msg[strlen(vars[i])] == '=')
                named = 1;
        CHECK(named);
    }
    /* Unset everything: the defaults, always accepted. */
    for (int i = 0; i < NVARS; i++)
        values[i] = NULL;
    CHECK(herd__config_parse(&cfg, lookup) == HERD_OK);
    CHECK(same_config(&cfg, &defaults));

    for (int i = 0; i < nfields; i++)
        free(fields[i]);
    return 0;
}
