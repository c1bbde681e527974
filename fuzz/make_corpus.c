/* make_corpus.c - writes the seed corpus checked in under fuzz/corpus/: valid negotiation
 * rounds for fuzz_wire (encoded with herd__wire_encode itself, so they stay valid if the wire
 * format changes: regenerate and commit) plus malformed edge cases, and configurations for
 * fuzz_config. Usage: fuzz_make_corpus <dir> (writes files into <dir>/wire and <dir>/config). The
 * input layouts are described at the top of fuzz_wire.c and fuzz_config.c. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "herd.h"
#include "negotiate.h"
#include "request_queue.h"

enum { CAP = 1 << 16 };

typedef struct input {
    uint8_t bytes[CAP];
    size_t len;
    char blob[8][8192]; /* the current round's blob per rank */
    size_t blob_len[8];
    int nranks;
} input_t;

static const char *out_dir;

static void die(const char *what)
{
    fprintf(stderr, "make_corpus: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void put(input_t *in, const void *p, size_t n)
{
    if (in->len + n > CAP) {
        fprintf(stderr, "make_corpus: input too long\n");
        exit(1);
    }
    memcpy(in->bytes + in->len, p, n);
    in->len += n;
}

static void put_u8(input_t *in, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(in, &b, 1);
}

static void start(input_t *in, int nranks, unsigned warn_tenths, unsigned timeout_tenths)
{
    memset(in, 0, sizeof *in);
    in->nranks = nranks;
    put_u8(in, (unsigned)(nranks - 1));
    put_u8(in, warn_tenths);
    put_u8(in, timeout_tenths);
}

static herd_wire_request_t request(const char *name, int kind, int dtype, int op, int root,
                                   int64_t count, int64_t priority, int64_t evict)
{
    herd_wire_request_t r;
    memset(&r, 0, sizeof r);
    r.attrs.kind = kind;
    r.attrs.dtype = dtype;
    r.attrs.op = op;
    r.attrs.root = root;
    r.attrs.device = HERD_DEVICE_CPU;
    r.attrs.count = count;
    r.attrs.row = 1;
    r.priority = priority;
    r.evict_slot = evict;
    r.name = name;
    r.name_len = strlen(name);
    return r;
}

static herd_wire_request_t allreduce(const char *name, int64_t count, int64_t priority)
{
    return request(name, HERD_KIND_ALLREDUCE, HERD_FLOAT32, HERD_SUM, -1, count, priority, -1);
}

/* Appends a request to rank r's blob of the round being built. */
static void ask(input_t *in, int r, herd_wire_request_t req)
{
    if (herd__wire_encode(in->blob[r], sizeof in->blob[r], &in->blob_len[r], &req) != 0) {
        fprintf(stderr, "make_corpus: cannot encode '%s'\n", req.name);
        exit(1);
    }
}

/* Appends raw bytes to rank r's blob (malformed records). */
static void ask_raw(input_t *in, int r, const void *p, size_t n)
{
    memcpy(in->blob[r] + in->blob_len[r], p, n);
    in->blob_len[r] += n;
}

/* Closes a round: ctrl byte, ready-bits seed, then every rank's blob. */
static void round_end(input_t *in, unsigned ctrl, uint64_t seed)
{
    put_u8(in, ctrl);
    for (int i = 0; i < 8; i++)
        put_u8(in, (unsigned)(seed >> (8 * i)) & 0xff);
    for (int r = 0; r < in->nranks; r++) {
        put_u8(in, (unsigned)(in->blob_len[r] & 0xff));
        put_u8(in, (unsigned)(in->blob_len[r] >> 8));
        put(in, in->blob[r], in->blob_len[r]);
        in->blob_len[r] = 0;
    }
}

enum { SCAN = 1, FAIL_PENDING = 0x18 };
#define TICK(n) ((unsigned)(n) << 5) /* the clock advances n * 250 ms */

static void write_file(const char *sub, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        die(path);
}

static void save(const input_t *in, const char *name)
{
    write_file("wire", name, in->bytes, in->len);
}

static void wire_corpus(void)
{
    input_t *in = calloc(1, sizeof *in);
    if (in == NULL)
        die("calloc");

    /* One rank: a name gets a slot, then runs from its ready bit. */
    start(in, 1, 0, 0);
    ask(in, 0, allreduce("fc.weight", 10, 0));
    round_end(in, 0, 0);
    round_end(in, 0, 0);
    save(in, "one_rank");

    /* Two ranks ask in different orders; both names get slots, then run by bits. */
    start(in, 2, 0, 0);
    ask(in, 0, allreduce("conv1.weight", 9408, 0));
    ask(in, 0, allreduce("fc.bias", 1000, 1));
    ask(in, 1, allreduce("fc.bias", 1000, 1));
    ask(in, 1, allreduce("conv1.weight", 9408, 0));
    round_end(in, 0, 0);
    round_end(in, 0, 0);
    round_end(in, 2, 0x0123456789abcdefULL);
    save(in, "two_ranks_orders");

    /* Broadcast from root 1, every dtype, and a name asked across two rounds. */
    start(in, 3, 0, 0);
    for (int r = 0; r < 3; r++)
        ask(in, r, request("weights", HERD_KIND_BROADCAST, HERD_FLOAT64, HERD_SUM, 1, 7, 0, -1));
    for (int d = 0; d < 8; d++) {
        char name[32];
        snprintf(name, sizeof name, "dtype.%d", d);
        for (int r = 0; r < 3; r++)
            ask(in, r, request(name, HERD_KIND_ALLREDUCE, d, d % 5, -1, 3 + d, 1 + d, -1));
    }
    ask(in, 0, allreduce("late", 5, 20));
    round_end(in, 0, 0);
    ask(in, 1, allreduce("late", 5, 20));
    ask(in, 2, allreduce("late", 5, 20));
    round_end(in, 0, 0);
    save(in, "three_ranks_broadcast_dtypes");

    /* Ranks disagree: rank 2 sends another count, rank 3 another dtype. */
    start(in, 4, 0, 0);
    ask(in, 0, allreduce("grad", 2048000, 0));
    ask(in, 1, allreduce("grad", 2048000, 0));
    ask(in, 2, allreduce("grad", 2048, 0));
    ask(in, 3, request("grad", HERD_KIND_ALLREDUCE, HERD_INT8, HERD_SUM, -1, 2048000, 0, -1));
    round_end(in, 0, 0);
    save(in, "mismatch");

    /* A cached name resubmitted with other attributes: asked by name again, naming its slot,
     * which every rank evicts; the freed slot is then reused. */
    start(in, 2, 0, 0);
    for (int r = 0; r < 2; r++) {
        ask(in, r, allreduce("a", 4, 0));
        ask(in, r, allreduce("b", 4, 1));
    }
    round_end(in, 0, 0);
    for (int r = 0; r < 2; r++)
        ask(in, r, request("a", HERD_KIND_ALLREDUCE, HERD_INT64, HERD_MAX, -1, 4, 0, 0));
    round_end(in, 0, 0);
    for (int r = 0; r < 2; r++)
        ask(in, r, allreduce("c", 1, 2));
    round_end(in, 0, 0);
    save(in, "evict_reuse");

    /* The other kinds (ABI 2): allgather, allgatherv with rows of 3 and counts that differ,
     * reduce-scatter in rows, all-to-all with counts, a barrier; then ranks 1 and 2 join, a
     * name only rank 0 asks completes (the joined take part), and rank 0's join ends it. */
    start(in, 3, 0, 0);
    for (int r = 0; r < 3; r++) {
        herd_wire_request_t q = request("ag", HERD_KIND_ALLGATHER, HERD_INT32, HERD_SUM, -1, 5,
                                        0, -1);
        ask(in, r, q);
        q = request("agv", HERD_KIND_ALLGATHERV, HERD_FLOAT32, HERD_SUM, -1, 3 * r, 1, -1);
        q.attrs.row = 3;
        ask(in, r, q);
        q = request("rs", HERD_KIND_REDUCESCATTER, HERD_FLOAT16, HERD_AVERAGE, -1, 28, 2, -1);
        q.attrs.row = 4;
        ask(in, r, q);
        q = request("a2av", HERD_KIND_ALLTOALLV, HERD_INT64, HERD_SUM, -1, 2 * (r + 1), 3, -1);
        q.attrs.row = 2;
        ask(in, r, q);
        ask(in, r, request("bar", HERD_KIND_BARRIER, HERD_UINT8, HERD_SUM, -1, 0, 4, -1));
    }
    round_end(in, 0, 0);
    ask(in, 1, request("herd.join", HERD_KIND_JOIN, HERD_UINT8, HERD_SUM, -1, 0, 5, -1));
    ask(in, 2, request("herd.join", HERD_KIND_JOIN, HERD_UINT8, HERD_SUM, -1, 0, 5, -1));
    round_end(in, 0, 0);
    ask(in, 0, allreduce("after.join", 8, 6));
    round_end(in, 0, 1);
    ask(in, 0, request("herd.join", HERD_KIND_JOIN, HERD_UINT8, HERD_SUM, -1, 0, 5, -1));
    round_end(in, 0, 0);
    save(in, "collectives_and_join");

    /* Stalls: a cached slot ready on rank 0 only, and a name only ranks 0 and 1 asked for;
     * warnings at 0.5 s, timeouts at 1 s, then the rest fails as at shutdown. */
    start(in, 3, 5, 10);
    for (int r = 0; r < 3; r++)
        ask(in, r, allreduce("cached", 16, 0));
    round_end(in, SCAN, 0);
    ask(in, 0, allreduce("partial", 8, 1));
    ask(in, 1, allreduce("partial", 8, 1));
    ask(in, 0, allreduce("never", 8, 2));
    round_end(in, SCAN, 1);
    round_end(in, SCAN | TICK(2), 1);
    round_end(in, SCAN | TICK(3), 1);
    round_end(in, SCAN | TICK(4), 1);
    round_end(in, FAIL_PENDING, 0);
    save(in, "stall_and_shutdown");

    /* Four ranks, 70 names (two ready words), the longest name allowed, ready words beyond
     * the slots and one short of them, random bits. */
    start(in, 4, 1, 2);
    char longname[HERD_MAX_NAME_LEN + 1];
    memset(longname, 'x', HERD_MAX_NAME_LEN);
    longname[HERD_MAX_NAME_LEN] = '\0';
    for (int i = 0; i < 70; i++) {
        char name[32];
        snprintf(name, sizeof name, "l%02d", i);
        for (int r = 0; r < 4; r++)
            ask(in, (r + i) % 4, allreduce(name, 1 + i, i));
    }
    for (int r = 0; r < 4; r++)
        ask(in, r, allreduce(longname, 1, 100));
    round_end(in, 2, 0);
    round_end(in, 2 | SCAN | TICK(7), 0x5555aaaa5555aaaaULL);
    round_end(in, 4 | SCAN | TICK(7), 0xfeedfacecafebeefULL);
    save(in, "four_ranks_70_names");

    /* Eight ranks (the most the target makes), priorities that differ per rank (rank 0's
     * count). */
    start(in, 8, 0, 0);
    for (int r = 0; r < 8; r++) {
        ask(in, r, allreduce("p", 1, 7 - r));
        ask(in, r, allreduce("q", 1, r));
        ask(in, r, allreduce("s", 1, 3));
    }
    round_end(in, 0, 0);
    round_end(in, 0, 0);
    save(in, "eight_ranks_priorities");

    /* Malformed records, each after a valid one: the valid one counts, the rest is dropped. */
    struct {
        const char *name;
        size_t at, len;
        uint8_t value;
    } bad[] = {
        {"bad_name_len_zero", 0, 2, 0},     {"bad_name_len_huge", 1, 1, 0xff},
        {"bad_kind", 2, 1, 7},              {"bad_dtype", 3, 1, 8},
        {"bad_op", 4, 1, 5},                {"bad_padding", 6, 1, 1},
        {"bad_root_allreduce", 8, 1, 0},    {"bad_device", 12, 4, 0xfe},
        {"bad_count_negative", 23, 1, 0x80}, {"bad_priority_negative", 31, 1, 0x80},
        {"bad_evict_slot", 32, 8, 0xfe},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        start(in, 2, 0, 0);
        char rec[HERD_WIRE_HEADER_BYTES + 16];
        size_t used = 0;
        herd_wire_request_t req = allreduce("victim", 3, 0);
        if (herd__wire_encode(rec, sizeof rec, &used, &req) != 0)
            exit(1);
        memset(rec + bad[i].at, bad[i].value, bad[i].len);
        for (int r = 0; r < 2; r++) {
            ask(in, r, allreduce("ok", 1, 0));
            ask_raw(in, r, rec, used);
        }
        round_end(in, 0, 0);
        save(in, bad[i].name);
    }

    /* Cut short: a header without its name, half a header, a u16 length past the input. */
    start(in, 2, 0, 0);
    {
        char rec[HERD_WIRE_HEADER_BYTES + 16];
        size_t used = 0;
        herd_wire_request_t req = allreduce("truncated", 3, 0);
        if (herd__wire_encode(rec, sizeof rec, &used, &req) != 0)
            exit(1);
        ask_raw(in, 0, rec, used - 1);
        ask_raw(in, 1, rec, HERD_WIRE_HEADER_BYTES / 2);
        round_end(in, 0, 0);
        save(in, "truncated_records");
        put_u8(in, 0);
        for (int i = 0; i < 8; i++)
            put_u8(in, 0);
        put_u8(in, 0xff);
        put_u8(in, 0xff);
        put(in, rec, 10);
        save(in, "length_past_end");
    }

    /* The same name twice from one rank in one round: the repeat is dropped. */
    start(in, 2, 0, 0);
    ask(in, 0, allreduce("twice", 1, 0));
    ask(in, 0, allreduce("twice", 1, 0));
    ask(in, 1, allreduce("twice", 1, 0));
    round_end(in, 0, 0);
    save(in, "duplicate_request");

    /* Evictions naming slots that do not exist or hold another name. */
    start(in, 2, 0, 0);
    for (int r = 0; r < 2; r++)
        ask(in, r, allreduce("x", 1, 0));
    round_end(in, 0, 0);
    ask(in, 0, request("y", HERD_KIND_ALLREDUCE, HERD_FLOAT32, HERD_SUM, -1, 1, 0, 0));
    ask(in, 1, request("x", HERD_KIND_ALLREDUCE, HERD_FLOAT32, HERD_SUM, -1, 2, 0, 99));
    round_end(in, 0, 0);
    save(in, "evict_wrong_slot");

    free(in);
    write_file("wire", "empty", "", 0);
}

static void config_case(const char *name, const char *const values[], int n)
{
    char buf[4096];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(values[i]);
        memcpy(buf + len, values[i], l);
        len += l;
        if (i + 1 < n)
            buf[len++] = '\0';
    }
    write_file("config", name, buf, len);
}

#define UNSET "\x7f"

static void config_corpus(void)
{
    /* Order: FUSION_THRESHOLD CHUNK_BYTES MAX_HANDLES SPIN_US IDLE_POLL_US STALL_WARNING_SECONDS
     * STALL_TIMEOUT_SECONDS SHUTDOWN_TIMEOUT_SECONDS TIMELINE GPU_BACKEND LOG_LEVEL. */
    const char *valid[] = {"64M", "4194304", "65536", "0", "20000", "60", "300", "60",
                           "/tmp/herd.%r.json", "nccl", "warn"};
    config_case("valid_all", valid, 11);
    const char *suffixes[] = {"1KiB", "2mb", "1G", "16", "1", "0.5", "0", "0", "", "MPI",
                              "debug"};
    config_case("valid_suffixes", suffixes, 11);
    const char *numbers[] = {"0", "0B", "4194304", "1000000", "1000000", "1e9", "0.001",
                             "1000000000", UNSET, "mpi", "3"};
    config_case("edge_numbers", numbers, 11);
    const char *words[] = {UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET,
                           "NCCL", "Warning"};
    config_case("valid_words", words, 11);
    const char *unset[] = {UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET,
                           UNSET, UNSET};
    config_case("all_unset", unset, 11);
    const char *bad_bytes[] = {"-1"};
    config_case("bad_negative", bad_bytes, 1);
    const char *bad_overflow[] = {"9223372036854775807G"};
    config_case("bad_overflow", bad_overflow, 1);
    const char *bad_hex[] = {UNSET, UNSET, UNSET, UNSET, UNSET, "0x10"};
    config_case("bad_hex_seconds", bad_hex, 6);
    const char *bad_inf[] = {UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, "inf"};
    config_case("bad_inf_seconds", bad_inf, 7);
    const char *bad_range[] = {UNSET, UNSET, "15", UNSET, "0"};
    config_case("bad_max_handles", bad_range, 5);
    const char *bad_level[] = {UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET,
                               "cuda", "verbose"};
    config_case("bad_gpu_backend_and_level", bad_level, 11);
    const char *spaces[] = {" 1", "1 ", "+1", "1KB ", "1.5M"};
    config_case("bad_spaces_and_signs", spaces, 5);
    const char *dots[] = {UNSET, UNSET, UNSET, UNSET, UNSET, "1..5", ".5", "5."};
    config_case("dots_seconds", dots, 8);
    char longpath[1100];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    const char *timeline[] = {UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, UNSET, longpath};
    config_case("timeline_too_long", timeline, 9);
    write_file("config", "empty", "", 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    char path[4096];
    const char *subs[] = {"", "/wire", "/config"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", out_dir, subs[i]);
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            die(path);
    }
    wire_corpus();
    config_corpus();
    return 0;
}
