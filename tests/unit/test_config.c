/* test_config.c - HERD_* parsing through a lookup table instead of the real environment. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "status.h"
#include "unit.h"

/* The environment a test sees: name/value pairs ending with a NULL name. */
typedef struct env_var {
    const char *name;
    const char *value;
} env_var_t;

static const env_var_t *current_env;

static const char *table_lookup(const char *name)
{
    for (const env_var_t *v = current_env; v != NULL && v->name != NULL; v++)
        if (strcmp(v->name, name) == 0)
            return v->value;
    return NULL;
}

/* Parses with exactly one variable set. */
static int parse_one(herd_config_t *cfg, const char *name, const char *value)
{
    memset(cfg, 0x5a, sizeof *cfg);
    env_var_t env[] = {{name, value}, {NULL, NULL}};
    current_env = env;
    int rc = herd__config_parse(cfg, table_lookup);
    current_env = NULL;
    return rc;
}

/* The documented defaults of the fields this suite covers. Callers fill *c with 0x5a first, so
 * a field the parser forgot to write shows up. */
static void expect_defaults(const herd_config_t *c)
{
    UNIT_EQ_INT(c->fusion_threshold, INT64_C(64) << 20);
    UNIT_EQ_INT(c->chunk_bytes, 1 << 20);
    UNIT_EQ_INT(c->log_level, HERD_LOG_WARN);
    UNIT_EQ_INT(c->max_handles, 1 << 16);
    UNIT_EQ_INT(c->spin_us, 0);
    UNIT_EQ_INT(c->idle_poll_us, 20000);
    UNIT_EQ_INT(c->stall_warning_ms, 60000);
    UNIT_EQ_INT(c->stall_timeout_ms, 300000);
    UNIT_EQ_INT(c->shutdown_timeout_ms, 60000);
    UNIT_EQ_STR(c->timeline, "");
    UNIT_EQ_INT(c->gpu_backend, HERD_GPU_BACKEND_NCCL);
    UNIT_EQ_INT(c->shm, 1);
    UNIT_EQ_INT(c->shm_bytes, 4 << 20);
    UNIT_EQ_INT(c->shm_hierarchical, 1);
    UNIT_EQ_INT(c->shm_stream_stores, 2);
}

static void test_defaults(void)
{
    herd_config_t c;
    memset(&c, 0x5a, sizeof c);
    herd__config_defaults(&c);
    expect_defaults(&c);
}

static void test_empty_environment_gives_defaults(void)
{
    herd_config_t c;
    memset(&c, 0x5a, sizeof c);
    env_var_t none[] = {{NULL, NULL}};
    current_env = none;
    UNIT_EQ_INT(herd__config_parse(&c, table_lookup), HERD_OK);
    current_env = NULL;
    expect_defaults(&c);
}

static void test_fusion_threshold_accepted_values(void)
{
    static const struct {
        const char *text;
        int64_t bytes;
    } ok[] = {
        {"1048576", 1048576},
        {"4M", INT64_C(4) << 20},
        {"64MiB", INT64_C(64) << 20},
        {"1k", 1024},
        {"1K", 1024},
        {"0", 0},
        {"3G", INT64_C(3) << 30},
        {"2kb", 2048},
        {"5mib", INT64_C(5) << 20},
        {"7B", 7},
        {"1024G", INT64_C(1) << 40}, /* the largest allowed */
        {"1099511627776", INT64_C(1) << 40},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        herd_config_t c;
        int rc = parse_one(&c, "HERD_FUSION_THRESHOLD", ok[i].text);
        if (rc != HERD_OK)
            UNIT_FAIL("HERD_FUSION_THRESHOLD='%s' refused (%d): %s", ok[i].text, rc,
                      herd_last_error());
        UNIT_EQ_INT(c.fusion_threshold, ok[i].bytes);
        /* Everything else keeps its default. */
        UNIT_EQ_INT(c.chunk_bytes, 1 << 20);
        UNIT_EQ_INT(c.max_handles, 1 << 16);
    }
}

static void test_fusion_threshold_rejected_values(void)
{
    static const char *const bad[] = {
        "abc",         "-1",   "1X",   "",      "99999999999999999999",
        "+5",          " 5",   "1.5M", "4MM",   "4Mx",
        "1iB",         "0x10", "1T",   "1025G", "1099511627777",
        "8589934592G", "M",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        herd_config_t c;
        herd__status_clear();
        int rc = parse_one(&c, "HERD_FUSION_THRESHOLD", bad[i]);
        if (rc != HERD_ERR_INVALID_ARG)
            UNIT_FAIL("HERD_FUSION_THRESHOLD='%s' returned %d, expected HERD_ERR_INVALID_ARG",
                      bad[i], rc);
        char prefix[128];
        snprintf(prefix, sizeof prefix, "HERD_FUSION_THRESHOLD='%s' is not valid: expected ",
                 bad[i]);
        UNIT_EQ_INT(strncmp(herd_last_error(), prefix, strlen(prefix)), 0);
        /* A refused configuration leaves defaults everywhere. */
        expect_defaults(&c);
    }
}

static void test_rejection_message_is_exact(void)
{
    herd_config_t c;
    UNIT_EQ_INT(parse_one(&c, "HERD_FUSION_THRESHOLD", "abc"), HERD_ERR_INVALID_ARG);
    UNIT_EQ_STR(herd_last_error(), "HERD_FUSION_THRESHOLD='abc' is not valid: expected a byte size "
                                   "(suffix K, M or G allowed) from 0 to 1099511627776");
    UNIT_EQ_INT(parse_one(&c, "HERD_MAX_HANDLES", "15"), HERD_ERR_INVALID_ARG);
    UNIT_EQ_STR(herd_last_error(),
                "HERD_MAX_HANDLES='15' is not valid: expected an integer from 16 to 4194304");
    UNIT_EQ_INT(parse_one(&c, "HERD_LOG_LEVEL", "loud"), HERD_ERR_INVALID_ARG);
    UNIT_EQ_STR(herd_last_error(),
                "HERD_LOG_LEVEL='loud' is not valid: expected error, warn, info, debug or 0-3");
}

static void test_chunk_bytes(void)
{
    herd_config_t c;
    UNIT_EQ_INT(parse_one(&c, "HERD_CHUNK_BYTES", "8M"), HERD_OK);
    UNIT_EQ_INT(c.chunk_bytes, INT64_C(8) << 20);
    UNIT_EQ_INT(c.fusion_threshold, INT64_C(64) << 20);
    UNIT_EQ_INT(parse_one(&c, "HERD_CHUNK_BYTES", "2Q"), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd_last_error(), "HERD_CHUNK_BYTES='2Q'");
}

static void test_log_level_names_and_numbers(void)
{
    static const struct {
        const char *text;
        int level;
    } ok[] = {
        {"error", HERD_LOG_ERROR},
        {"warn", HERD_LOG_WARN},
        {"info", HERD_LOG_INFO},
        {"debug", HERD_LOG_DEBUG},
        {"ERROR", HERD_LOG_ERROR},
        {"Debug", HERD_LOG_DEBUG},
        {"warning", HERD_LOG_WARN},
        {"WARNING", HERD_LOG_WARN},
        {"0", 0},
        {"1", 1},
        {"2", 2},
        {"3", 3},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        herd_config_t c;
        int rc = parse_one(&c, "HERD_LOG_LEVEL", ok[i].text);
        if (rc != HERD_OK)
            UNIT_FAIL("HERD_LOG_LEVEL='%s' refused: %s", ok[i].text, herd_last_error());
        UNIT_EQ_INT(c.log_level, ok[i].level);
    }
    static const char *const bad[] = {"4", "-1", "", "verbose", "00", "1 ", "errors", "3x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        herd_config_t c;
        int rc = parse_one(&c, "HERD_LOG_LEVEL", bad[i]);
        if (rc != HERD_ERR_INVALID_ARG)
            UNIT_FAIL("HERD_LOG_LEVEL='%s' returned %d, expected HERD_ERR_INVALID_ARG", bad[i], rc);
        UNIT_CONTAINS(herd_last_error(), "HERD_LOG_LEVEL=");
        UNIT_EQ_INT(c.log_level, HERD_LOG_WARN);
    }
}

static void test_max_handles_bounds(void)
{
    static const struct {
        const char *text;
        int ok;
        int value;
    } cases[] = {
        {"16", 1, 16},
        {"4194304", 1, 4194304},
        {"1000", 1, 1000},
        {"15", 0, 0},
        {"4194305", 0, 0},
        {"0", 0, 0},
        {"-16", 0, 0},
        {"64k", 0, 0},
        {"100 ", 0, 0},
        {"", 0, 0},
        {"99999999999999999999", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        herd_config_t c;
        int rc = parse_one(&c, "HERD_MAX_HANDLES", cases[i].text);
        if (rc != (cases[i].ok ? HERD_OK : HERD_ERR_INVALID_ARG))
            UNIT_FAIL("HERD_MAX_HANDLES='%s' returned %d", cases[i].text, rc);
        UNIT_EQ_INT(c.max_handles, cases[i].ok ? cases[i].value : 1 << 16);
        if (!cases[i].ok)
            UNIT_CONTAINS(herd_last_error(), "HERD_MAX_HANDLES=");
    }
}

static void test_spin_and_idle_poll_bounds(void)
{
    herd_config_t c;
    UNIT_EQ_INT(parse_one(&c, "HERD_SPIN_US", "0"), HERD_OK);
    UNIT_EQ_INT(c.spin_us, 0);
    UNIT_EQ_INT(parse_one(&c, "HERD_SPIN_US", "1000000"), HERD_OK);
    UNIT_EQ_INT(c.spin_us, 1000000);
    UNIT_EQ_INT(parse_one(&c, "HERD_SPIN_US", "1000001"), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd_last_error(), "HERD_SPIN_US='1000001'");
    UNIT_EQ_INT(parse_one(&c, "HERD_WAIT_SPIN_US", "0"), HERD_OK);
    UNIT_EQ_INT(c.wait_spin_us, 0);
    UNIT_EQ_INT(parse_one(&c, "HERD_WAIT_SPIN_US", "1000000"), HERD_OK);
    UNIT_EQ_INT(c.wait_spin_us, 1000000);
    UNIT_EQ_INT(parse_one(&c, "HERD_WAIT_SPIN_US", "-1"), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd_last_error(), "HERD_WAIT_SPIN_US='-1'");
    herd__config_defaults(&c);
    UNIT_EQ_INT(c.wait_spin_us, 100);
    UNIT_EQ_INT(parse_one(&c, "HERD_IDLE_POLL_US", "1"), HERD_OK);
    UNIT_EQ_INT(c.idle_poll_us, 1);
    UNIT_EQ_INT(parse_one(&c, "HERD_IDLE_POLL_US", "0"), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd_last_error(), "HERD_IDLE_POLL_US='0'");
}

static void test_shm_knobs(void)
{
    herd_config_t c;
    UNIT_EQ_INT(parse_one(&c, "HERD_SHM", "0"), HERD_OK);
    UNIT_EQ_INT(c.shm, 0);
    UNIT_EQ_INT(parse_one(&c, "HERD_SHM", "2"), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd_last_error(), "HERD_SHM='2'");
    UNIT_EQ_INT(parse_one(&c, "HERD_HIERARCHICAL_ALLREDUCE", "0"), HERD_OK);
    UNIT_EQ_INT(c.shm_hierarchical, 0);
    UNIT_EQ_INT(parse_one(&c, "HERD_SHM_STREAM_STORES", "1"), HERD_OK);
    UNIT_EQ_INT(c.shm_stream_stores, 1);
    UNIT_EQ_INT(parse_one(&c, "HERD_SHM_STREAM_STORES", "3"), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd_last_error(), "HERD_SHM_STREAM_STORES='3'");
    UNIT_EQ_INT(parse_one(&c, "HERD_SHM_BYTES", "16K"), HERD_OK);
    UNIT_EQ_INT(c.shm_bytes, 16384);
    UNIT_EQ_INT(parse_one(&c, "HERD_SHM_BYTES", "16383"), HERD_ERR_INVALID_ARG);
    UNIT_CONTAINS(herd_last_error(), "HERD_SHM_BYTES='16383'");
}

static void test_several_variables_together(void)
{
    env_var_t env[] = {{"HERD_FUSION_THRESHOLD", "2M"},
                       {"HERD_CHUNK_BYTES", "512k"},
                       {"HERD_LOG_LEVEL", "debug"},
                       {"HERD_MAX_HANDLES", "128"},
                       {"HERD_SPIN_US", "7"},
                       {"HERD_IDLE_POLL_US", "250"},
                       {NULL, NULL}};
    herd_config_t c;
    current_env = env;
    UNIT_EQ_INT(herd__config_parse(&c, table_lookup), HERD_OK);
    current_env = NULL;
    UNIT_EQ_INT(c.fusion_threshold, INT64_C(2) << 20);
    UNIT_EQ_INT(c.chunk_bytes, 512 * 1024);
    UNIT_EQ_INT(c.log_level, HERD_LOG_DEBUG);
    UNIT_EQ_INT(c.max_handles, 128);
    UNIT_EQ_INT(c.spin_us, 7);
    UNIT_EQ_INT(c.idle_poll_us, 250);
}

static void test_one_bad_variable_leaves_all_defaults(void)
{
    /* Good values before and after the bad one: none of them may leak into the result. */
    env_var_t env[] = {{"HERD_FUSION_THRESHOLD", "2M"},
                       {"HERD_LOG_LEVEL", "debug"},
                       {"HERD_MAX_HANDLES", "lots"},
                       {"HERD_SPIN_US", "7"},
                       {NULL, NULL}};
    herd_config_t c;
    memset(&c, 0x5a, sizeof c);
    current_env = env;
    UNIT_EQ_INT(herd__config_parse(&c, table_lookup), HERD_ERR_INVALID_ARG);
    current_env = NULL;
    UNIT_EQ_STR(herd_last_error(),
                "HERD_MAX_HANDLES='lots' is not valid: expected an integer from 16 to 4194304");
    expect_defaults(&c);
}

static void test_seconds_knobs(void)
{
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        {"60", 60000},
        {"0", 0},
        {"0.5", 500},
        {"2.25", 2250},
        {"1000000000", INT64_C(1000000000000)},
        {"0.001", 1},
        {"7.", 7000},
    };
    static const char *const vars[] = {"HERD_STALL_WARNING_SECONDS", "HERD_STALL_TIMEOUT_SECONDS",
                                       "HERD_SHUTDOWN_TIMEOUT_SECONDS"};
    for (int v = 0; v < 3; v++) {
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
            herd_config_t c;
            int rc = parse_one(&c, vars[v], ok[i].text);
            if (rc != HERD_OK)
                UNIT_FAIL("%s='%s' refused: %s", vars[v], ok[i].text, herd_last_error());
            int64_t got = v == 0   ? c.stall_warning_ms
                          : v == 1 ? c.stall_timeout_ms
                                   : c.shutdown_timeout_ms;
            UNIT_EQ_INT(got, ok[i].ms);
        }
        static const char *const bad[] = {"",     "-1",  "abc", ".5",         " 5", "5 ",
                                          "1e10", "nan", "inf", "1000000001", "5s", "1,5"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            herd_config_t c;
            int rc = parse_one(&c, vars[v], bad[i]);
            if (rc != HERD_ERR_INVALID_ARG)
                UNIT_FAIL("%s='%s' returned %d, expected HERD_ERR_INVALID_ARG", vars[v], bad[i],
                          rc);
            char want[256];
            snprintf(want, sizeof want,
                     "%s='%s' is not valid: expected a number of seconds from 0 to 1e9 (e.g. 60 "
                     "or 0.5)",
                     vars[v], bad[i]);
            UNIT_EQ_STR(herd_last_error(), want);
            expect_defaults(&c);
        }
    }
}

/* The seconds knobs are documented as decimal numbers ("2", "0.5"). strtod also reads
 * hexadecimal, so "0x10" must not quietly mean 16 seconds. */
static void test_seconds_reject_hexadecimal(void)
{
    static const char *const hex[] = {"0x10", "0X1p3", "0x0"};
    for (size_t i = 0; i < sizeof hex / sizeof hex[0]; i++) {
        int64_t ms = -7;
        int rc = herd__config_parse_seconds(hex[i], &ms);
        if (rc != -1)
            UNIT_FAIL("herd__config_parse_seconds(\"%s\") accepted it as %lld ms", hex[i],
                      (long long)ms);
        herd_config_t c;
        UNIT_EQ_INT(parse_one(&c, "HERD_STALL_TIMEOUT_SECONDS", hex[i]), HERD_ERR_INVALID_ARG);
    }
}

static void test_timeline_and_gpu_backend(void)
{
    herd_config_t c;
    UNIT_EQ_INT(parse_one(&c, "HERD_TIMELINE", "/tmp/trace-%r.json"), HERD_OK);
    UNIT_EQ_STR(c.timeline, "/tmp/trace-%r.json");
    UNIT_EQ_INT(parse_one(&c, "HERD_TIMELINE", ""), HERD_OK);
    UNIT_EQ_STR(c.timeline, "");
    static char path[1025];
    memset(path, 'p', 1023);
    path[1023] = '\0';
    UNIT_EQ_INT(parse_one(&c, "HERD_TIMELINE", path), HERD_OK); /* 1023 bytes: the longest */
    UNIT_EQ_INT(strlen(c.timeline), 1023);
    path[1023] = 'p';
    path[1024] = '\0';
    UNIT_EQ_INT(parse_one(&c, "HERD_TIMELINE", path), HERD_ERR_INVALID_ARG);
    UNIT_EQ_INT(strncmp(herd_last_error(), "HERD_TIMELINE='ppp", 18), 0);
    UNIT_EQ_STR(c.timeline, "");

    UNIT_EQ_INT(parse_one(&c, "HERD_GPU_BACKEND", "mpi"), HERD_OK);
    UNIT_EQ_INT(c.gpu_backend, HERD_GPU_BACKEND_MPI);
    UNIT_EQ_INT(parse_one(&c, "HERD_GPU_BACKEND", "MPI"), HERD_OK);
    UNIT_EQ_INT(c.gpu_backend, HERD_GPU_BACKEND_MPI);
    UNIT_EQ_INT(parse_one(&c, "HERD_GPU_BACKEND", "NcCl"), HERD_OK);
    UNIT_EQ_INT(c.gpu_backend, HERD_GPU_BACKEND_NCCL);
    UNIT_EQ_INT(parse_one(&c, "HERD_GPU_BACKEND", "gloo"), HERD_ERR_INVALID_ARG);
    UNIT_EQ_STR(herd_last_error(), "HERD_GPU_BACKEND='gloo' is not valid: expected nccl or mpi");
    UNIT_EQ_INT(c.gpu_backend, HERD_GPU_BACKEND_NCCL);
}

static void test_parse_bytes_directly(void)
{
    int64_t v = -7;
    UNIT_EQ_INT(herd__config_parse_bytes("9223372036854775807", &v), 0);
    UNIT_EQ_INT(v, INT64_MAX);
    UNIT_EQ_INT(herd__config_parse_bytes("8589934591G", &v), 0);
    UNIT_EQ_INT(v, INT64_C(8589934591) << 30);
    v = -7;
    UNIT_EQ_INT(herd__config_parse_bytes("8589934592G", &v), -1); /* 2^63: does not fit */
    UNIT_EQ_INT(v, -7);                                           /* untouched on failure */
    UNIT_EQ_INT(herd__config_parse_bytes("9223372036854775808", &v), -1);
    UNIT_EQ_INT(herd__config_parse_bytes("", &v), -1);
    UNIT_EQ_INT(herd__config_parse_bytes("K", &v), -1);
    UNIT_EQ_INT(herd__config_parse_bytes("12gIb", &v), 0);
    UNIT_EQ_INT(v, INT64_C(12) << 30);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"defaults", test_defaults},
        {"empty_environment_gives_defaults", test_empty_environment_gives_defaults},
        {"fusion_threshold_accepted_values", test_fusion_threshold_accepted_values},
        {"fusion_threshold_rejected_values", test_fusion_threshold_rejected_values},
        {"rejection_message_is_exact", test_rejection_message_is_exact},
        {"chunk_bytes", test_chunk_bytes},
        {"log_level_names_and_numbers", test_log_level_names_and_numbers},
        {"max_handles_bounds", test_max_handles_bounds},
        {"spin_and_idle_poll_bounds", test_spin_and_idle_poll_bounds},
        {"shm_knobs", test_shm_knobs},
        {"several_variables_together", test_several_variables_together},
        {"one_bad_variable_leaves_all_defaults", test_one_bad_variable_leaves_all_defaults},
        {"seconds_knobs", test_seconds_knobs},
        {"seconds_reject_hexadecimal", test_seconds_reject_hexadecimal},
        {"timeline_and_gpu_backend", test_timeline_and_gpu_backend},
        {"parse_bytes_directly", test_parse_bytes_directly},
        CU_TEST_INFO_NULL,
    };
    return unit_run("config", tests);
}
