/* test_negotiate.c - the replicated negotiation state machine, fed by hand: the wire format and
 * its validation, names completing in one round or across rounds, mismatches and their messages,
 * ready bits, the execution order, eviction and slot reuse, shutdown of pending names, malformed
 * input, and determinism (the property every rank relies on to issue the same collectives). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "herd.h"
#include "negotiate.h"
#include "op_kind.h"
#include "request_queue.h"
#include "unit.h"

enum { MAXR = 4, MAXW = 8, BLOB_CAP = 8192 };

/* ---- building rounds ------------------------------------------------------------------------ */

typedef struct blob {
    char buf[BLOB_CAP];
    size_t len;
} blob_t;

typedef struct round_in {
    int nranks;
    blob_t blob[MAXR];
    uint64_t bits[MAXW];
    int64_t words;
} round_in_t;

static herd_attrs_t ar(int64_t count, int dtype, int op)
{
    return (herd_attrs_t){.count = count,
                          .row = 1,
                          .kind = HERD_KIND_ALLREDUCE,
                          .dtype = dtype,
                          .op = op,
                          .root = -1,
                          .device = HERD_DEVICE_CPU};
}

static herd_attrs_t bc(int64_t count, int dtype, int root)
{
    return (herd_attrs_t){.count = count,
                          .row = 1,
                          .kind = HERD_KIND_BROADCAST,
                          .dtype = dtype,
                          .op = HERD_SUM,
                          .root = root,
                          .device = HERD_DEVICE_CPU};
}

static herd_attrs_t on_gpu(herd_attrs_t a, int device)
{
    a.device = device;
    return a;
}

static void round_reset(round_in_t *in, int nranks)
{
    memset(in, 0, sizeof *in);
    in->nranks = nranks;
}

static void encode(blob_t *b, const char *name, herd_attrs_t a, int64_t priority, int64_t evict)
{
    herd_wire_request_t req = {.attrs = a,
                               .priority = priority,
                               .evict_slot = evict,
                               .name = name,
                               .name_len = strlen(name)};
    UNIT_EQ_INT_FATAL(herd__wire_encode(b->buf, sizeof b->buf, &b->len, &req), 0);
}

/* Rank `rank` asks for `name` by name this round. */
static void ask(round_in_t *in, int rank, const char *name, herd_attrs_t a, int64_t priority,
                int64_t evict)
{
    encode(&in->blob[rank], name, a, priority, evict);
}

/* Every rank has `slot` ready. */
static void bit(round_in_t *in, int64_t slot)
{
    in->bits[slot / 64] |= UINT64_C(1) << (slot % 64);
    if (in->words < slot / 64 + 1)
        in->words = slot / 64 + 1;
}

static void run(herd_negotiator_t *n, const round_in_t *in)
{
    const char *blobs[MAXR];
    size_t lens[MAXR];
    for (int r = 0; r < in->nranks; r++) {
        blobs[r] = in->blob[r].len ? in->blob[r].buf : NULL;
        lens[r] = in->blob[r].len;
    }
    UNIT_EQ_INT_FATAL(herd__negotiate_round(n, in->bits, in->words, blobs, lens), 0);
}

/* ---- reading results ------------------------------------------------------------------------- */

/* "3,0,2": the ready list. */
static const char *ready_str(const herd_negotiator_t *n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < n->nready && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? "," : "",
                                 (long long)n->ready[i]);
    return buf;
}

/* "new 0 a; evicted 1 b; error -7 c": the events. */
static const char *events_str(const herd_negotiator_t *n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < n->nevents && used < cap; i++) {
        const herd_neg_event_t *e = &n->events[i];
        const char *sep = i ? "; " : "";
        if (e->type == HERD_EVENT_NEW_SLOT)
            used += (size_t)snprintf(buf + used, cap - used, "%snew %lld %.*s", sep,
                                     (long long)e->slot, (int)e->name_len, e->name);
        else if (e->type == HERD_EVENT_EVICTED)
            used += (size_t)snprintf(buf + used, cap - used, "%sevicted %lld %.*s", sep,
                                     (long long)e->slot, (int)e->name_len, e->name);
        else if (e->type == HERD_EVENT_ERROR)
            used += (size_t)snprintf(buf + used, cap - used, "%serror %d %.*s", sep, e->status,
                                     (int)e->name_len, e->name);
        else if (e->type == HERD_EVENT_STALLED)
            used += (size_t)snprintf(buf + used, cap - used, "%sstalled %lld %.*s", sep,
                                     (long long)e->slot, (int)e->name_len, e->name);
        else if (e->type == HERD_EVENT_EXPIRED)
            used += (size_t)snprintf(buf + used, cap - used, "%sexpired %lld %.*s", sep,
                                     (long long)e->slot, (int)e->name_len, e->name);
        else if (e->type == HERD_EVENT_JOINED)
            used += (size_t)snprintf(buf + used, cap - used, "%sjoined %lld", sep,
                                     (long long)e->slot);
        else
            used += (size_t)snprintf(buf + used, cap - used, "%s?%d", sep, e->type);
    }
    return buf;
}

#define EXPECT_READY(n, want)                                                                      \
    do {                                                                                           \
        char ready_buf_[1024];                                                                     \
        UNIT_EQ_STR(ready_str((n), ready_buf_, sizeof ready_buf_), (want));                        \
    } while (0)

#define EXPECT_EVENTS(n, want)                                                                     \
    do {                                                                                           \
        char events_buf_[2048];                                                                    \
        UNIT_EQ_STR(events_str((n), events_buf_, sizeof events_buf_), (want));                     \
    } while (0)

/* The in-use slot holding `name`, or -1. */
static int64_t slot_of(const herd_negotiator_t *n, const char *name)
{
    for (int64_t s = 0; s < n->nslots; s++)
        if (n->slots[s].in_use && n->slots[s].name_len == strlen(name) &&
            memcmp(n->slots[s].name, name, n->slots[s].name_len) == 0)
            return s;
    return -1;
}

static int attrs_equal(const herd_attrs_t *a, const herd_attrs_t *b)
{
    return a->count == b->count && a->kind == b->kind && a->dtype == b->dtype && a->op == b->op &&
           a->root == b->root && a->device == b->device;
}

/* Creates `name` with the same attributes on every rank in one round; rank r proposes priority
 * prio + r (only rank 0's counts). Returns its slot. */
static int64_t make_slot(herd_negotiator_t *n, const char *name, herd_attrs_t a, int64_t prio)
{
    round_in_t in;
    round_reset(&in, n->nranks);
    for (int r = 0; r < n->nranks; r++)
        ask(&in, r, name, a, prio + r, -1);
    run(n, &in);
    UNIT_EQ_INT_FATAL(n->nevents, 1);
    UNIT_EQ_INT_FATAL(n->events[0].type, HERD_EVENT_NEW_SLOT);
    return n->events[0].slot;
}

/* ---- wire format ----------------------------------------------------------------------------- */

static void test_wire_round_trip(void)
{
    char longest[HERD_MAX_NAME_LEN + 1];
    memset(longest, 'z', HERD_MAX_NAME_LEN);
    longest[HERD_MAX_NAME_LEN] = '\0';
    const herd_wire_request_t in[] = {
        {.attrs = ar(123456789012, HERD_FLOAT32, HERD_AVERAGE),
         .priority = 7,
         .evict_slot = -1,
         .name = "fc.weight",
         .name_len = 9},
        {.attrs = on_gpu(bc(3, HERD_INT8, 2), 5),
         .priority = INT64_MAX,
         .evict_slot = 41,
         .name = "emb",
         .name_len = 3},
        {.attrs = ar(0, HERD_BFLOAT16, HERD_PRODUCT),
         .priority = 0,
         .evict_slot = 0,
         .name = longest,
         .name_len = HERD_MAX_NAME_LEN},
    };
    char buf[1024];
    size_t used = 0;
    for (int i = 0; i < 3; i++)
        UNIT_EQ_INT(herd__wire_encode(buf, sizeof buf, &used, &in[i]), 0);
    UNIT_EQ_INT(used, 3 * HERD_WIRE_HEADER_BYTES + 9 + 3 + HERD_MAX_NAME_LEN);
    /* Reserved bytes go out as zero. */
    UNIT_EQ_INT(buf[5] | buf[6] | buf[7], 0);

    size_t off = 0;
    size_t expect_off[] = {HERD_WIRE_HEADER_BYTES + 9, 2 * HERD_WIRE_HEADER_BYTES + 12, used};
    for (int i = 0; i < 3; i++) {
        herd_wire_request_t out;
        memset(&out, 0xA5, sizeof out);
        UNIT_EQ_INT(herd__wire_decode(buf, used, &off, &out), 1);
        UNIT_EQ_INT(off, expect_off[i]);
        UNIT_EQ_INT(attrs_equal(&out.attrs, &in[i].attrs), 1);
        UNIT_EQ_INT(out.attrs.count, in[i].attrs.count);
        UNIT_EQ_INT(out.attrs.device, in[i].attrs.device);
        UNIT_EQ_INT(out.priority, in[i].priority);
        UNIT_EQ_INT(out.evict_slot, in[i].evict_slot);
        UNIT_EQ_MEM(out.name, out.name_len, in[i].name, in[i].name_len);
        /* The name points into the buffer; it is not copied. */
        UNIT_EQ_INT(out.name >= buf && out.name + out.name_len <= buf + used, 1);
    }
    herd_wire_request_t out;
    UNIT_EQ_INT(herd__wire_decode(buf, used, &off, &out), 0);
    UNIT_EQ_INT(off, used);
    /* An empty blob, even without a buffer, is simply the end. */
    off = 0;
    UNIT_EQ_INT(herd__wire_decode(NULL, 0, &off, &out), 0);
}

static void test_wire_encode_refuses(void)
{
    char buf[HERD_WIRE_HEADER_BYTES + 4];
    char name256[HERD_MAX_NAME_LEN + 2];
    memset(name256, 'q', sizeof name256);
    herd_wire_request_t req = {.attrs = ar(1, HERD_INT32, HERD_SUM),
                               .priority = 0,
                               .evict_slot = -1,
                               .name = "abcd",
                               .name_len = 4};
    size_t used = 0;
    UNIT_EQ_INT(herd__wire_encode(buf, sizeof buf, &used, &req), 0); /* exactly fits */
    UNIT_EQ_INT(used, sizeof buf);
    used = 1;
    UNIT_EQ_INT(herd__wire_encode(buf, sizeof buf, &used, &req), -1); /* one byte short */
    UNIT_EQ_INT(used, 1);
    used = sizeof buf + 1;
    UNIT_EQ_INT(herd__wire_encode(buf, sizeof buf, &used, &req), -1); /* used beyond cap */
    UNIT_EQ_INT(used, sizeof buf + 1);

    char big[1024];
    used = 0;
    req.name_len = 0;
    UNIT_EQ_INT(herd__wire_encode(big, sizeof big, &used, &req), -1);
    req.name = name256;
    req.name_len = HERD_MAX_NAME_LEN + 1;
    UNIT_EQ_INT(herd__wire_encode(big, sizeof big, &used, &req), -1);
    UNIT_EQ_INT(used, 0);
    req.name_len = HERD_MAX_NAME_LEN;
    UNIT_EQ_INT(herd__wire_encode(big, sizeof big, &used, &req), 0);
    UNIT_EQ_INT(used, HERD_WIRE_HEADER_BYTES + HERD_MAX_NAME_LEN);
}

/* A valid record's bytes in a heap block of exactly `len` bytes, so an over-read trips ASan. */
static char *exact_copy(const char *src, size_t len)
{
    char *p = malloc(len ? len : 1);
    if (p != NULL && len)
        memcpy(p, src, len);
    return p;
}

static int decode_exact(const char *bytes, size_t len, size_t *off)
{
    char *p = exact_copy(bytes, len);
    herd_wire_request_t out;
    int rc = herd__wire_decode(p, len, off, &out);
    if (rc == 1 && (out.name < p || out.name + out.name_len > p + len))
        UNIT_FAIL("decoded name lies outside the buffer");
    free(p);
    return rc;
}

typedef struct wire_patch {
    const char *what;
    size_t at;    /* byte offset in the record */
    size_t width; /* 1, 2, 4 or 8 */
    int64_t value;
    int valid; /* 1 if the patched record must still decode */
} wire_patch_t;

static void patch(char *rec, const wire_patch_t *p)
{
    uint8_t u8 = (uint8_t)p->value;
    uint16_t u16 = (uint16_t)p->value;
    int32_t i32 = (int32_t)p->value;
    int64_t i64 = p->value;
    const void *src = p->width == 1   ? (const void *)&u8
                      : p->width == 2 ? (const void *)&u16
                      : p->width == 4 ? (const void *)&i32
                                      : (const void *)&i64;
    memcpy(rec + p->at, src, p->width);
}

static void test_wire_decode_rejects_malformed(void)
{
    /* A broadcast and an allreduce record to patch; each followed by spare name bytes so that
     * only the field under test can make it fail. */
    enum { NAME = 8, SPARE = 300 };
    static char allreduce[HERD_WIRE_HEADER_BYTES + SPARE];
    static char broadcast[HERD_WIRE_HEADER_BYTES + SPARE];
    size_t used = 0;
    herd_wire_request_t req = {.attrs = ar(10, HERD_FLOAT32, HERD_SUM),
                               .priority = 3,
                               .evict_slot = -1,
                               .name = "abcdefgh",
                               .name_len = NAME};
    UNIT_EQ_INT_FATAL(herd__wire_encode(allreduce, sizeof allreduce, &used, &req), 0);
    used = 0;
    req.attrs = bc(10, HERD_INT64, 1);
    UNIT_EQ_INT_FATAL(herd__wire_encode(broadcast, sizeof broadcast, &used, &req), 0);
    memset(allreduce + HERD_WIRE_HEADER_BYTES + NAME, 'x', SPARE - NAME);
    memset(broadcast + HERD_WIRE_HEADER_BYTES + NAME, 'x', SPARE - NAME);
    const size_t rec_len = HERD_WIRE_HEADER_BYTES + NAME;

    static const wire_patch_t ar_patches[] = {
        {"unchanged", 2, 1, 0, 1},
        {"name_len 0", 0, 2, 0, 0},
        {"name_len 256", 0, 2, 256, 0},
        {"name_len 255", 0, 2, 255, 1},
        {"name_len 65535", 0, 2, 65535, 0},
        {"kind 9", 2, 1, 9, 0},
        {"row 0", 40, 8, 0, 0},
        {"row 2 on an allreduce", 40, 8, 2, 0},
        {"row -1", 40, 8, -1, 0},
        {"kind 255", 2, 1, 255, 0},
        {"dtype 8", 3, 1, 8, 0},
        {"dtype 255", 3, 1, 255, 0},
        {"dtype 7", 3, 1, 7, 1},
        {"op 5", 4, 1, 5, 0},
        {"op 4", 4, 1, 4, 1},
        {"reserved byte 5", 5, 1, 1, 0},
        {"reserved byte 6", 6, 1, 0x80, 0},
        {"reserved byte 7", 7, 1, 1, 0},
        {"allreduce root 0", 8, 4, 0, 0},
        {"allreduce root -2", 8, 4, -2, 0},
        {"allreduce root 3", 8, 4, 3, 0},
        {"device -2", 12, 4, -2, 0},
        {"device 7", 12, 4, 7, 1},
        {"count -1", 16, 8, -1, 0},
        {"count INT64_MIN", 16, 8, INT64_MIN, 0},
        {"count 0", 16, 8, 0, 1},
        {"priority -1", 24, 8, -1, 0},
        {"evict -2", 32, 8, -2, 0},
        {"evict 12", 32, 8, 12, 1},
    };
    for (size_t i = 0; i < sizeof ar_patches / sizeof ar_patches[0]; i++) {
        char rec[sizeof allreduce];
        memcpy(rec, allreduce, sizeof rec);
        patch(rec, &ar_patches[i]);
        uint16_t name_len;
        memcpy(&name_len, rec, 2);
        /* The buffer holds the header plus as many name bytes as claimed (where the spare room
         * allows), so a refusal can only come from the patched field. */
        size_t len =
            HERD_WIRE_HEADER_BYTES + (name_len >= 1 && name_len <= SPARE ? name_len : NAME);
        size_t off = 0;
        int rc = decode_exact(rec, len, &off);
        if (rc != (ar_patches[i].valid ? 1 : -1))
            UNIT_FAIL("allreduce record with %s: decode returned %d", ar_patches[i].what, rc);
        UNIT_EQ_INT(off, ar_patches[i].valid ? len : 0); /* no advance on failure */
    }

    static const wire_patch_t bc_patches[] = {
        {"unchanged", 2, 1, 1, 1},          {"broadcast root -1", 8, 4, -1, 0},
        {"broadcast root -7", 8, 4, -7, 0}, {"broadcast root 0", 8, 4, 0, 1},
        {"broadcast kind 2", 2, 1, 2, 0},
    };
    for (size_t i = 0; i < sizeof bc_patches / sizeof bc_patches[0]; i++) {
        char rec[sizeof broadcast];
        memcpy(rec, broadcast, sizeof rec);
        patch(rec, &bc_patches[i]);
        size_t off = 0;
        int rc = decode_exact(rec, rec_len, &off);
        if (rc != (bc_patches[i].valid ? 1 : -1))
            UNIT_FAIL("broadcast record with %s: decode returned %d", bc_patches[i].what, rc);
    }

    /* Every truncation of a valid record: the header cut short, or the name cut short. */
    for (size_t len = 1; len < rec_len; len++) {
        size_t off = 0;
        int rc = decode_exact(allreduce, len, &off);
        if (rc != -1)
            UNIT_FAIL("record truncated to %zu of %zu bytes: decode returned %d", len, rec_len, rc);
        UNIT_EQ_INT(off, 0);
    }
    /* A name one byte longer than the buffer holds. */
    {
        char rec[sizeof allreduce];
        memcpy(rec, allreduce, sizeof rec);
        uint16_t longer = NAME + 1;
        memcpy(rec, &longer, 2);
        size_t off = 0;
        UNIT_EQ_INT(decode_exact(rec, rec_len, &off), -1);
    }
    /* A valid record followed by a truncated one: the first decodes, the second is refused. */
    {
        char two[2 * (HERD_WIRE_HEADER_BYTES + NAME)];
        memcpy(two, allreduce, rec_len);
        memcpy(two + rec_len, broadcast, rec_len);
        char *p = exact_copy(two, sizeof two - 1);
        size_t off = 0;
        herd_wire_request_t out;
        UNIT_EQ_INT(herd__wire_decode(p, sizeof two - 1, &off, &out), 1);
        UNIT_EQ_INT(off, rec_len);
        UNIT_EQ_INT(herd__wire_decode(p, sizeof two - 1, &off, &out), -1);
        UNIT_EQ_INT(off, rec_len);
        free(p);
    }
    /* An offset past the end, and a missing buffer with a length. */
    {
        size_t off = rec_len + 1;
        herd_wire_request_t out;
        UNIT_EQ_INT(herd__wire_decode(allreduce, rec_len, &off, &out), -1);
        off = 0;
        UNIT_EQ_INT(herd__wire_decode(NULL, rec_len, &off, &out), -1);
    }
}

/* Random bytes and randomly damaged records, each in an exact-size heap block: decoding must
 * terminate, never read outside the block (ASan), and only return records that pass every
 * check. */
static void test_wire_decode_rejects_nul_in_name(void)
{
    blob_t b = {0};
    encode(&b, "abc", ar(1, HERD_INT32, HERD_SUM), 0, -1);
    size_t off = 0;
    herd_wire_request_t r;
    UNIT_EQ_INT(herd__wire_decode(b.buf, b.len, &off, &r), 1);
    b.buf[HERD_WIRE_HEADER_BYTES + 1] = '\0'; /* "a\0c" */
    off = 0;
    UNIT_EQ_INT(herd__wire_decode(b.buf, b.len, &off, &r), -1);
    UNIT_EQ_INT(off, 0);
}

static void test_wire_decode_fuzz(void)
{
    unit_rng_t rng = {UINT64_C(0x1234567887654321)};
    char valid[3 * (HERD_WIRE_HEADER_BYTES + 16)];
    size_t vlen = 0;
    herd_wire_request_t req = {.attrs = ar(5, HERD_INT32, HERD_MAX),
                               .priority = 1,
                               .evict_slot = -1,
                               .name = "w0",
                               .name_len = 2};
    UNIT_EQ_INT_FATAL(herd__wire_encode(valid, sizeof valid, &vlen, &req), 0);
    req.attrs = bc(9, HERD_UINT8, 0);
    req.name = "bias.of.layer";
    req.name_len = 13;
    UNIT_EQ_INT_FATAL(herd__wire_encode(valid, sizeof valid, &vlen, &req), 0);

    int bad_records = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char tmp[sizeof valid];
        size_t len;
        if (iter % 2) {
            len = (size_t)unit_rng_below(&rng, sizeof tmp + 1);
            for (size_t i = 0; i < len; i++)
                tmp[i] = (char)unit_rng_next(&rng);
            if (len >= 8 && iter % 4 == 1) { /* plausible header, random rest */
                tmp[5] = tmp[6] = tmp[7] = 0;
                uint16_t nl = (uint16_t)unit_rng_below(&rng, 80);
                memcpy(tmp, &nl, 2);
            }
        } else {
            memcpy(tmp, valid, vlen);
            len = vlen - (size_t)unit_rng_below(&rng, 4);
            tmp[unit_rng_below(&rng, len)] ^= (char)(1u << unit_rng_below(&rng, 8));
        }
        char *p = exact_copy(tmp, len);
        size_t off = 0;
        herd_wire_request_t out;
        int rc, steps = 0;
        while ((rc = herd__wire_decode(p, len, &off, &out)) == 1 && steps++ < 100) {
            int ok = out.name_len >= 1 && out.name_len <= HERD_MAX_NAME_LEN && off <= len &&
                     out.name >= p && out.name + out.name_len == p + off && out.attrs.count >= 0 &&
                     herd__dtype_valid(out.attrs.dtype) && herd__op_valid(out.attrs.op) &&
                     out.priority >= 0 && out.evict_slot >= -1 &&
                     out.attrs.device >= HERD_DEVICE_CPU && herd__kind_valid(out.attrs.kind) &&
                     (herd__kind(out.attrs.kind)->has_root ? out.attrs.root >= 0
                                                           : out.attrs.root == -1) &&
                     out.attrs.row >= 1 && out.attrs.count % out.attrs.row == 0;
            if (!ok)
                bad_records++;
        }
        if (steps > 100)
            UNIT_FAIL("decoding %zu bytes did not terminate", len);
        free(p);
    }
    UNIT_EQ_INT(bad_records, 0);
}

/* ---- attributes ------------------------------------------------------------------------------ */

static void test_attrs_describe(void)
{
    char out[160];
    herd__attrs_describe(&(herd_attrs_t){.count = 10,
                                         .row = 1,
                                         .kind = HERD_KIND_ALLREDUCE,
                                         .dtype = HERD_FLOAT32,
                                         .op = HERD_SUM,
                                         .root = -1,
                                         .device = HERD_DEVICE_CPU},
                         out, sizeof out);
    UNIT_EQ_STR(out, "allreduce of 10 float32 (sum)");
    herd_attrs_t b = bc(3, HERD_INT8, 1);
    herd__attrs_describe(&b, out, sizeof out);
    UNIT_EQ_STR(out, "broadcast of 3 int8 from root 1");
    b = on_gpu(b, 2);
    herd__attrs_describe(&b, out, sizeof out);
    UNIT_EQ_STR(out, "broadcast of 3 int8 from root 1 on GPU");
    herd_attrs_t a = on_gpu(ar(7, HERD_BFLOAT16, HERD_AVERAGE), 0);
    herd__attrs_describe(&a, out, sizeof out);
    UNIT_EQ_STR(out, "allreduce of 7 bfloat16 (average) on GPU");
    a = ar(INT64_MAX, HERD_FLOAT64, HERD_PRODUCT);
    herd__attrs_describe(&a, out, sizeof out);
    UNIT_EQ_STR(out, "allreduce of 9223372036854775807 float64 (product)");
    /* A short buffer is cut, never overrun. */
    char small[9];
    memset(small, '#', sizeof small);
    herd__attrs_describe(&a, small, 8);
    UNIT_EQ_STR(small, "allredu");
    UNIT_EQ_INT(small[8], '#');
}

static void test_attrs_agree(void)
{
    const herd_attrs_t base = ar(10, HERD_FLOAT32, HERD_SUM);
    herd_attrs_t x = base;
    UNIT_EQ_INT(herd__attrs_agree(&base, &x), 1);
    x.count = 11;
    UNIT_EQ_INT(herd__attrs_agree(&base, &x), 0);
    x = base;
    x.dtype = HERD_FLOAT64;
    UNIT_EQ_INT(herd__attrs_agree(&base, &x), 0);
    x = base;
    x.op = HERD_MIN;
    UNIT_EQ_INT(herd__attrs_agree(&base, &x), 0);
    x = base;
    x.kind = HERD_KIND_BROADCAST;
    UNIT_EQ_INT(herd__attrs_agree(&base, &x), 0);
    x = base;
    x.root = 0;
    UNIT_EQ_INT(herd__attrs_agree(&base, &x), 0);
    /* Devices agree by class: host with host, any GPU with any GPU. */
    x = on_gpu(base, 0);
    UNIT_EQ_INT(herd__attrs_agree(&base, &x), 0);
    herd_attrs_t y = on_gpu(base, 3);
    UNIT_EQ_INT(herd__attrs_agree(&x, &y), 1);
    UNIT_EQ_INT(herd__attrs_agree(&y, &x), 1);
}

/* ---- completing names ---------------------------------------------------------------------- */

static void all_ranks_in_one_round(int nranks)
{
    herd_negotiator_t n;
    UNIT_EQ_INT_FATAL(herd__negotiate_init(&n, nranks), 0);
    UNIT_EQ_INT(n.nranks, nranks);
    UNIT_EQ_INT(herd__negotiate_words(&n), 0);
    round_in_t in;
    round_reset(&in, nranks);
    const herd_attrs_t a = ar(10, HERD_FLOAT32, HERD_SUM);
    /* Each rank proposes its own priority: rank 0's (5) is the one every rank adopts. */
    for (int r = 0; r < nranks; r++)
        ask(&in, r, "fc.weight", a, r == 0 ? 5 : 100 + r, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 0 fc.weight");
    EXPECT_READY(&n, "0");
    UNIT_EQ_INT(n.nslots, 1);
    UNIT_EQ_INT(n.npending, 0);
    UNIT_EQ_INT(n.malformed, 0);
    UNIT_EQ_INT(herd__negotiate_words(&n), 1);
    UNIT_EQ_INT_FATAL(n.nslots, 1);
    const herd_slot_info_t *s = &n.slots[0];
    UNIT_EQ_INT(s->in_use, 1);
    UNIT_EQ_INT(s->priority, 5);
    UNIT_EQ_INT(attrs_equal(&s->attrs, &a), 1);
    UNIT_EQ_STR(s->name, "fc.weight");
    UNIT_EQ_INT(s->name_len, 9);
    UNIT_EQ_INT(s->local == NULL, 1);
    /* The event's name is the slot's. */
    UNIT_EQ_INT(n.events[0].name_len, 9);
    UNIT_EQ_INT(n.events[0].status, 0);

    /* A quiet round clears the results of the last one. */
    round_reset(&in, nranks);
    run(&n, &in);
    EXPECT_EVENTS(&n, "");
    EXPECT_READY(&n, "");
    /* From now on a bit is enough. */
    bit(&in, 0);
    run(&n, &in);
    EXPECT_EVENTS(&n, "");
    EXPECT_READY(&n, "0");
    herd__negotiate_destroy(&n);
}

static void test_all_ranks_in_one_round(void)
{
    for (int nranks = 1; nranks <= 3; nranks++)
        all_ranks_in_one_round(nranks);
}

static void ranks_in_different_rounds(int nranks, const int *order)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, nranks);
    const herd_attrs_t a = bc(64, HERD_UINT8, nranks - 1);
    for (int k = 0; k < nranks; k++) {
        int r = order[k];
        round_in_t in;
        round_reset(&in, nranks);
        ask(&in, r, "emb", a, r == 0 ? 4 : 0, -1);
        run(&n, &in);
        if (k < nranks - 1) {
            EXPECT_EVENTS(&n, "");
            EXPECT_READY(&n, "");
            UNIT_EQ_INT(n.npending, 1);
            UNIT_EQ_INT(n.nslots, 0);
        } else {
            EXPECT_EVENTS(&n, "new 0 emb");
            EXPECT_READY(&n, "0");
            UNIT_EQ_INT(n.npending, 0);
            UNIT_EQ_INT_FATAL(n.nslots, 1);
            UNIT_EQ_INT(n.slots[0].priority, 4); /* rank 0's, even when rank 0 was not last */
        }
    }
    herd__negotiate_destroy(&n);
}

static void test_ranks_in_different_rounds(void)
{
    const int two_a[] = {0, 1}, two_b[] = {1, 0};
    const int three_a[] = {2, 0, 1}, three_b[] = {0, 1, 2}, three_c[] = {1, 2, 0};
    ranks_in_different_rounds(2, two_a);
    ranks_in_different_rounds(2, two_b);
    ranks_in_different_rounds(3, three_a);
    ranks_in_different_rounds(3, three_b);
    ranks_in_different_rounds(3, three_c);
}

typedef struct mismatch_case {
    const char *what;
    herd_attrs_t a0, a1;
    const char *message;
} mismatch_case_t;

static void test_mismatch_two_ranks(void)
{
    const mismatch_case_t cases[] = {
        {"count", ar(10, HERD_FLOAT32, HERD_SUM), ar(12, HERD_FLOAT32, HERD_SUM),
         "tensor 'fc.weight': ranks disagree: rank 0 sent allreduce of 10 float32 (sum), "
         "rank 1 sent allreduce of 12 float32 (sum)"},
        {"dtype", ar(10, HERD_FLOAT32, HERD_SUM), ar(10, HERD_FLOAT16, HERD_SUM),
         "tensor 'fc.weight': ranks disagree: rank 0 sent allreduce of 10 float32 (sum), "
         "rank 1 sent allreduce of 10 float16 (sum)"},
        {"op", ar(10, HERD_INT32, HERD_SUM), ar(10, HERD_INT32, HERD_AVERAGE),
         "tensor 'fc.weight': ranks disagree: rank 0 sent allreduce of 10 int32 (sum), "
         "rank 1 sent allreduce of 10 int32 (average)"},
        {"root", bc(3, HERD_INT8, 0), bc(3, HERD_INT8, 1),
         "tensor 'fc.weight': ranks disagree: rank 0 sent broadcast of 3 int8 from root 0, "
         "rank 1 sent broadcast of 3 int8 from root 1"},
        {"kind", ar(3, HERD_INT8, HERD_SUM), bc(3, HERD_INT8, 0),
         "tensor 'fc.weight': ranks disagree: rank 0 sent allreduce of 3 int8 (sum), "
         "rank 1 sent broadcast of 3 int8 from root 0"},
        {"device", ar(10, HERD_FLOAT32, HERD_SUM), on_gpu(ar(10, HERD_FLOAT32, HERD_SUM), 0),
         "tensor 'fc.weight': ranks disagree: rank 0 sent allreduce of 10 float32 (sum), "
         "rank 1 sent allreduce of 10 float32 (sum) on GPU"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* The same outcome whether both ask in one round or in two. */
        for (int split = 0; split < 2; split++) {
            herd_negotiator_t n;
            herd__negotiate_init(&n, 2);
            round_in_t in;
            round_reset(&in, 2);
            ask(&in, 0, "fc.weight", cases[i].a0, 0, -1);
            if (split) {
                run(&n, &in);
                EXPECT_EVENTS(&n, "");
                round_reset(&in, 2);
            }
            ask(&in, 1, "fc.weight", cases[i].a1, 0, -1);
            run(&n, &in);
            EXPECT_EVENTS(&n, "error -7 fc.weight");
            EXPECT_READY(&n, "");
            if (n.nevents == 1) {
                UNIT_EQ_INT(n.events[0].status, HERD_ERR_MISMATCH);
                UNIT_EQ_INT(n.events[0].slot, -1);
                UNIT_EQ_STR(n.events[0].message, cases[i].message);
            }
            UNIT_EQ_INT(n.nslots, 0);
            UNIT_EQ_INT(n.npending, 0);

            /* The name is free again: agreeing attributes now make slot 0. */
            round_reset(&in, 2);
            ask(&in, 0, "fc.weight", cases[i].a0, 0, -1);
            ask(&in, 1, "fc.weight", cases[i].a0, 0, -1);
            run(&n, &in);
            EXPECT_EVENTS(&n, "new 0 fc.weight");
            herd__negotiate_destroy(&n);
        }
    }
}

static void test_mismatch_three_ranks(void)
{
    const herd_attrs_t good = ar(2048, HERD_FLOAT32, HERD_SUM);
    const herd_attrs_t bad = ar(2048000, HERD_FLOAT32, HERD_SUM);
    const herd_attrs_t other = ar(2048, HERD_FLOAT64, HERD_SUM);
    const struct {
        herd_attrs_t a[3];
        const char *message;
    } cases[] = {
        {{good, good, bad},
         "tensor 'w': ranks disagree: rank 0 sent allreduce of 2048 float32 (sum), "
         "rank 2 sent allreduce of 2048000 float32 (sum)"},
        {{good, bad, good},
         "tensor 'w': ranks disagree: rank 0 sent allreduce of 2048 float32 (sum), "
         "rank 1 sent allreduce of 2048000 float32 (sum)"},
        {{good, bad, other},
         "tensor 'w': ranks disagree: rank 0 sent allreduce of 2048 float32 (sum), "
         "rank 1 sent allreduce of 2048000 float32 (sum) (and 1 more ranks differ from rank 0)"},
        {{bad, good, good},
         "tensor 'w': ranks disagree: rank 0 sent allreduce of 2048000 float32 (sum), "
         "rank 1 sent allreduce of 2048 float32 (sum) (and 1 more ranks differ from rank 0)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        herd_negotiator_t n;
        herd__negotiate_init(&n, 3);
        round_in_t in;
        /* Rank 2 asks first, alone; ranks 0 and 1 complete the name in the next round. */
        round_reset(&in, 3);
        ask(&in, 2, "w", cases[i].a[2], 0, -1);
        run(&n, &in);
        EXPECT_EVENTS(&n, "");
        round_reset(&in, 3);
        ask(&in, 0, "w", cases[i].a[0], 0, -1);
        ask(&in, 1, "w", cases[i].a[1], 0, -1);
        run(&n, &in);
        EXPECT_EVENTS(&n, "error -7 w");
        if (n.nevents == 1)
            UNIT_EQ_STR(n.events[0].message, cases[i].message);
        EXPECT_READY(&n, "");
        UNIT_EQ_INT(n.npending, 0);
        UNIT_EQ_INT(n.nslots, 0);
        herd__negotiate_destroy(&n);
    }
}

static void test_gpu_ordinals_may_differ(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 3);
    round_in_t in;
    round_reset(&in, 3);
    for (int r = 0; r < 3; r++)
        ask(&in, r, "g", on_gpu(ar(4, HERD_FLOAT16, HERD_SUM), r), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 0 g");
    UNIT_EQ_INT_FATAL(n.nslots, 1);
    UNIT_EQ_INT(n.slots[0].attrs.device, 0); /* rank 0's attributes are kept */
    herd__negotiate_destroy(&n);
}

/* A name whose long description fills the message: the text is complete, not cut. */
static void test_mismatch_message_with_longest_name(void)
{
    char name[HERD_MAX_NAME_LEN + 1];
    memset(name, 'L', HERD_MAX_NAME_LEN);
    name[HERD_MAX_NAME_LEN] = '\0';
    herd_negotiator_t n;
    herd__negotiate_init(&n, 2);
    round_in_t in;
    round_reset(&in, 2);
    ask(&in, 0, name, on_gpu(bc(INT64_MAX, HERD_BFLOAT16, 2147483647), 1), 0, -1);
    ask(&in, 1, name, on_gpu(ar(INT64_MAX, HERD_BFLOAT16, HERD_PRODUCT), 1), 0, -1);
    run(&n, &in);
    UNIT_EQ_INT_FATAL(n.nevents, 1);
    char want[1024];
    snprintf(want, sizeof want,
             "tensor '%s': ranks disagree: rank 0 sent broadcast of 9223372036854775807 bfloat16 "
             "from root 2147483647 on GPU, rank 1 sent allreduce of 9223372036854775807 bfloat16 "
             "(product) on GPU",
             name);
    UNIT_EQ_STR(n.events[0].message, want);
    UNIT_EQ_MEM(n.events[0].name, n.events[0].name_len, name, strlen(name));
    herd__negotiate_destroy(&n);
}

/* ---- ready bits and order ------------------------------------------------------------------- */

static void test_bits_make_cached_slots_ready(void)
{
    for (int nranks = 1; nranks <= 3; nranks++) {
        herd_negotiator_t n;
        herd__negotiate_init(&n, nranks);
        UNIT_EQ_INT(make_slot(&n, "a", ar(1, HERD_INT32, HERD_SUM), 0), 0);
        UNIT_EQ_INT(make_slot(&n, "b", ar(2, HERD_INT32, HERD_SUM), 1), 1);
        UNIT_EQ_INT(make_slot(&n, "c", ar(3, HERD_INT32, HERD_SUM), 2), 2);
        round_in_t in;
        round_reset(&in, nranks);
        bit(&in, 1);
        run(&n, &in);
        EXPECT_READY(&n, "1");
        EXPECT_EVENTS(&n, "");
        round_reset(&in, nranks);
        bit(&in, 2);
        bit(&in, 0);
        run(&n, &in);
        EXPECT_READY(&n, "0,2");
        /* Bits beyond the slots that exist are ignored. */
        round_reset(&in, nranks);
        bit(&in, 5);
        bit(&in, 63);
        bit(&in, 64 * 3 + 1);
        bit(&in, 2);
        run(&n, &in);
        EXPECT_READY(&n, "2");
        /* A vector shorter than needed: only the words given count (here none). */
        round_reset(&in, nranks);
        bit(&in, 0);
        in.words = 0;
        run(&n, &in);
        EXPECT_READY(&n, "");
        /* No bits, no blobs at all. */
        UNIT_EQ_INT(herd__negotiate_round(&n, NULL, 0, NULL, NULL), 0);
        EXPECT_READY(&n, "");
        EXPECT_EVENTS(&n, "");
        herd__negotiate_destroy(&n);
    }
}

static void test_ready_order_follows_rank0_priority(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 2);
    /* Rank 0 declared d, b, c, a (keys 0..3); rank 1 declared them a, b, c, d. Rank 1's blob
     * lists them in yet another order, which decides the slot numbers. */
    const char *names[] = {"a", "b", "c", "d"};
    const int64_t prio0[] = {3, 1, 2, 0};
    const int64_t prio1[] = {0, 1, 2, 3};
    round_in_t in;
    round_reset(&in, 2);
    for (int i = 0; i < 4; i++)
        ask(&in, 0, names[i], ar(8, HERD_FLOAT32, HERD_SUM), prio0[i], -1);
    const int rank1_order[] = {2, 0, 3, 1};
    for (int k = 0; k < 4; k++) {
        int i = rank1_order[k];
        ask(&in, 1, names[i], ar(8, HERD_FLOAT32, HERD_SUM), prio1[i], -1);
    }
    run(&n, &in);
    /* Slots in completion order (rank 1's blob): c=0, a=1, d=2, b=3. */
    EXPECT_EVENTS(&n, "new 0 c; new 1 a; new 2 d; new 3 b");
    /* Execution order by rank 0's priority: d(0), b(1), c(2), a(3). */
    EXPECT_READY(&n, "2,3,0,1");
    for (int i = 0; i < 4; i++) {
        int64_t slot = slot_of(&n, names[i]);
        UNIT_EQ_INT_FATAL(slot >= 0, 1);
        UNIT_EQ_INT(n.slots[slot].priority, prio0[i]);
    }

    /* Bits arrive in slot order; execution still follows priority. */
    round_reset(&in, 2);
    for (int s = 0; s < 4; s++)
        bit(&in, s);
    run(&n, &in);
    EXPECT_READY(&n, "2,3,0,1");
    round_reset(&in, 2);
    bit(&in, 1);
    bit(&in, 0);
    run(&n, &in);
    EXPECT_READY(&n, "0,1");

    /* Equal priorities fall back to the slot number; new slots and bits sort together. */
    round_reset(&in, 2);
    ask(&in, 0, "e", ar(1, HERD_INT8, HERD_SUM), 2, -1); /* ties with c */
    ask(&in, 1, "e", ar(1, HERD_INT8, HERD_SUM), 9, -1);
    ask(&in, 0, "f", ar(1, HERD_INT8, HERD_SUM), 0, -1); /* ties with d */
    ask(&in, 1, "f", ar(1, HERD_INT8, HERD_SUM), 9, -1);
    bit(&in, 0); /* c, priority 2 */
    bit(&in, 2); /* d, priority 0 */
    bit(&in, 1); /* a, priority 3 */
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 4 e; new 5 f");
    EXPECT_READY(&n, "2,5,0,4,1");
    herd__negotiate_destroy(&n);
}

/* Many slots over several words, priorities scrambled: the ready list is exactly the set of
 * ready in-use slots, sorted by (priority, slot). Checked against a plain insertion sort. */
static void test_ready_order_many_slots(void)
{
    enum { SLOTS = 200 };
    herd_negotiator_t n;
    herd__negotiate_init(&n, 3);
    unit_rng_t rng = {42};
    int64_t prio[SLOTS];
    round_in_t *in = calloc(1, sizeof *in);
    UNIT_EQ_INT_FATAL(in != NULL, 1);
    /* Create them 50 per round (blob capacity). */
    for (int base = 0; base < SLOTS; base += 50) {
        round_reset(in, 3);
        for (int i = base; i < base + 50; i++) {
            char name[16];
            snprintf(name, sizeof name, "p%d", i);
            prio[i] = (int64_t)unit_rng_below(&rng, 40); /* many ties */
            for (int r = 0; r < 3; r++)
                ask(in, r, name, ar(i, HERD_INT64, HERD_MIN), r == 0 ? prio[i] : 0, -1);
        }
        run(&n, in);
        UNIT_EQ_INT_FATAL(n.nevents, 50);
    }
    UNIT_EQ_INT(n.nslots, SLOTS);
    UNIT_EQ_INT(herd__negotiate_words(&n), 4);
    for (int s = 0; s < SLOTS; s++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", s);
        UNIT_EQ_INT(slot_of(&n, name), s);
    }
    for (int trial = 0; trial < 20; trial++) {
        round_reset(in, 3);
        int64_t want[SLOTS];
        int64_t nwant = 0;
        for (int s = 0; s < SLOTS; s++) {
            if (trial == 0 || unit_rng_below(&rng, 3) == 0) {
                bit(in, s);
                /* insertion into want[], ordered by (prio, slot) */
                int64_t j = nwant++;
                while (j > 0 && (prio[want[j - 1]] > prio[s] ||
                                 (prio[want[j - 1]] == prio[s] && want[j - 1] > s))) {
                    want[j] = want[j - 1];
                    j--;
                }
                want[j] = s;
            }
        }
        run(&n, in);
        UNIT_EQ_INT(n.nready, nwant);
        int64_t differ = 0;
        for (int64_t i = 0; i < nwant && i < n.nready; i++)
            differ += n.ready[i] != want[i];
        UNIT_EQ_INT(differ, 0);
    }
    free(in);
    herd__negotiate_destroy(&n);
}

/* ---- eviction ------------------------------------------------------------------------------ */

static void test_eviction_and_slot_reuse(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 2);
    const herd_attrs_t v1 = ar(10, HERD_FLOAT32, HERD_SUM);
    const herd_attrs_t v2 = ar(20, HERD_FLOAT32, HERD_SUM);
    UNIT_EQ_INT(make_slot(&n, "A", v1, 0), 0);
    UNIT_EQ_INT(make_slot(&n, "B", v1, 1), 1);
    UNIT_EQ_INT(make_slot(&n, "C", v1, 2), 2);

    /* Rank 0 resubmits A with new attributes: it asks by name, naming its old slot. */
    round_in_t in;
    round_reset(&in, 2);
    ask(&in, 0, "A", v2, 0, 0);
    run(&n, &in);
    EXPECT_EVENTS(&n, "evicted 0 A");
    EXPECT_READY(&n, "");
    UNIT_EQ_INT(n.slots[0].in_use, 0);
    UNIT_EQ_INT(n.npending, 1);
    UNIT_EQ_INT(n.nfree, 1);
    /* A bit for an evicted slot means nothing. */
    round_reset(&in, 2);
    bit(&in, 0);
    bit(&in, 1);
    run(&n, &in);
    EXPECT_READY(&n, "1");
    /* Rank 1 follows; its eviction of the same slot is a no-op; A is remade in slot 0. */
    round_reset(&in, 2);
    ask(&in, 1, "A", v2, 0, 0);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 0 A");
    EXPECT_READY(&n, "0");
    UNIT_EQ_INT_FATAL(n.slots[0].in_use, 1);
    UNIT_EQ_INT(n.slots[0].attrs.count, 20);
    UNIT_EQ_INT(n.nslots, 3);
    UNIT_EQ_INT(n.nfree, 0);

    /* Both ranks change C in the same round: one eviction, then the new slot (the same one). */
    round_reset(&in, 2);
    ask(&in, 0, "C", v2, 2, 2);
    ask(&in, 1, "C", v2, 2, 2);
    run(&n, &in);
    EXPECT_EVENTS(&n, "evicted 2 C; new 2 C");
    EXPECT_READY(&n, "2");

    /* Freed slots are reused last-in first-out, before new ones are made. */
    round_reset(&in, 2);
    ask(&in, 0, "B", v2, 1, 1);
    ask(&in, 0, "A", v1, 0, 0);
    run(&n, &in);
    EXPECT_EVENTS(&n, "evicted 1 B; evicted 0 A");
    UNIT_EQ_INT(n.nfree, 2);
    UNIT_EQ_INT(make_slot(&n, "X", v1, 10), 0);
    UNIT_EQ_INT(make_slot(&n, "Y", v1, 11), 1);
    round_reset(&in, 2);
    ask(&in, 1, "A", v1, 0, -1); /* no free slot left: a fresh one */
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 3 A");
    UNIT_EQ_INT(n.nslots, 4);

    /* An eviction naming a slot that holds another name, or no slot, changes nothing. */
    round_reset(&in, 2);
    ask(&in, 0, "Q", v1, 20, 2); /* slot 2 is C */
    ask(&in, 0, "R", v1, 21, 1000);
    run(&n, &in);
    EXPECT_EVENTS(&n, "");
    UNIT_EQ_INT(slot_of(&n, "C"), 2);
    UNIT_EQ_INT(n.npending, 3); /* B (rank 1 missing), Q, R */
    herd__negotiate_destroy(&n);
}

/* The realistic path of a mismatch on a cached name: rank 0 changed the count and asks by name
 * (evicting); rank 1 set its bit, which the AND drops; after the eviction rank 1 asks by name. */
static void test_mismatch_on_a_cached_name(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 2);
    UNIT_EQ_INT(make_slot(&n, "A", ar(10, HERD_FLOAT32, HERD_SUM), 0), 0);
    round_in_t in;
    round_reset(&in, 2);
    ask(&in, 0, "A", ar(12, HERD_FLOAT32, HERD_SUM), 0, 0);
    run(&n, &in);
    EXPECT_EVENTS(&n, "evicted 0 A");
    EXPECT_READY(&n, "");
    round_reset(&in, 2);
    ask(&in, 1, "A", ar(10, HERD_FLOAT32, HERD_SUM), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "error -7 A");
    if (n.nevents == 1)
        UNIT_EQ_STR(n.events[0].message,
                    "tensor 'A': ranks disagree: rank 0 sent allreduce of 12 float32 (sum), "
                    "rank 1 sent allreduce of 10 float32 (sum)");
    UNIT_EQ_INT(n.npending, 0);
    UNIT_EQ_INT(n.nfree, 1);
    herd__negotiate_destroy(&n);
}

/* ---- shutdown, malformed input -------------------------------------------------------------- */

static void test_fail_pending(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 3);
    UNIT_EQ_INT(make_slot(&n, "cached", ar(1, HERD_INT32, HERD_SUM), 0), 0);
    round_in_t in;
    round_reset(&in, 3);
    ask(&in, 0, "p", ar(1, HERD_INT32, HERD_SUM), 1, -1);
    ask(&in, 2, "q", ar(1, HERD_INT32, HERD_SUM), 2, -1);
    ask(&in, 1, "q", ar(1, HERD_INT32, HERD_SUM), 2, -1);
    bit(&in, 0);
    run(&n, &in);
    EXPECT_READY(&n, "0");
    UNIT_EQ_INT(n.npending, 2);

    const char *why = "herd shut down before every rank submitted this operation";
    UNIT_EQ_INT(herd__negotiate_fail_pending(&n, HERD_ERR_SHUTDOWN, why), 0);
    EXPECT_READY(&n, ""); /* the last round's results are gone */
    UNIT_EQ_INT_FATAL(n.nevents, 2);
    int seen_p = 0, seen_q = 0;
    for (int i = 0; i < 2; i++) {
        const herd_neg_event_t *e = &n.events[i];
        UNIT_EQ_INT(e->type, HERD_EVENT_ERROR);
        UNIT_EQ_INT(e->status, HERD_ERR_SHUTDOWN);
        UNIT_EQ_INT(e->slot, -1);
        char want[128];
        snprintf(want, sizeof want, "tensor '%.*s': %s", (int)e->name_len, e->name, why);
        UNIT_EQ_STR(e->message, want);
        seen_p += e->name_len == 1 && e->name[0] == 'p';
        seen_q += e->name_len == 1 && e->name[0] == 'q';
    }
    UNIT_EQ_INT(seen_p, 1);
    UNIT_EQ_INT(seen_q, 1);
    UNIT_EQ_INT(n.npending, 0);

    /* Cached slots survive; the failed names start over from nothing. */
    UNIT_EQ_INT(n.slots[0].in_use, 1);
    round_reset(&in, 3);
    bit(&in, 0);
    ask(&in, 0, "q", ar(1, HERD_INT32, HERD_SUM), 2, -1);
    run(&n, &in);
    EXPECT_READY(&n, "0");
    EXPECT_EVENTS(&n, ""); /* ranks 1 and 2's earlier asks were dropped with the name */
    UNIT_EQ_INT(n.npending, 1);

    /* Nothing pending: nothing to report. */
    herd__negotiate_destroy(&n);
    herd__negotiate_init(&n, 2);
    UNIT_EQ_INT(herd__negotiate_fail_pending(&n, HERD_ERR_SHUTDOWN, why), 0);
    UNIT_EQ_INT(n.nevents, 0);
    herd__negotiate_destroy(&n);
}

static void test_duplicate_request_is_malformed(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 2);
    round_in_t in;
    round_reset(&in, 2);
    ask(&in, 0, "A", ar(10, HERD_FLOAT32, HERD_SUM), 0, -1);
    ask(&in, 0, "A", ar(99, HERD_FLOAT32, HERD_SUM), 0, -1); /* same round */
    run(&n, &in);
    UNIT_EQ_INT(n.malformed, 1);
    EXPECT_EVENTS(&n, "");
    round_reset(&in, 2);
    ask(&in, 0, "A", ar(77, HERD_FLOAT32, HERD_SUM), 0, -1); /* a later round */
    run(&n, &in);
    UNIT_EQ_INT(n.malformed, 2);
    EXPECT_EVENTS(&n, "");
    UNIT_EQ_INT(n.npending, 1);
    /* The first request stands: rank 1 agreeing with it makes the slot, with count 10. */
    round_reset(&in, 2);
    ask(&in, 1, "A", ar(10, HERD_FLOAT32, HERD_SUM), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 0 A");
    UNIT_EQ_INT_FATAL(n.nslots, 1);
    UNIT_EQ_INT(n.slots[0].attrs.count, 10);
    UNIT_EQ_INT(n.malformed, 2);
    herd__negotiate_destroy(&n);
}

static void test_malformed_blob_drops_only_its_rest(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 3);
    round_in_t in;
    round_reset(&in, 3);
    for (int r = 0; r < 3; r++)
        if (r != 1)
            ask(&in, r, "A", ar(1, HERD_INT8, HERD_SUM), 0, -1);
    for (int r = 0; r < 3; r++)
        if (r != 1)
            ask(&in, r, "B", ar(1, HERD_INT8, HERD_SUM), 1, -1);
    /* Rank 1: A, then ten bytes of garbage, then B, which is never reached. */
    ask(&in, 1, "A", ar(1, HERD_INT8, HERD_SUM), 0, -1);
    memset(in.blob[1].buf + in.blob[1].len, 0x7F, 10);
    in.blob[1].len += 10;
    ask(&in, 1, "B", ar(1, HERD_INT8, HERD_SUM), 1, -1);
    run(&n, &in);
    UNIT_EQ_INT(n.malformed, 1);
    EXPECT_EVENTS(&n, "new 0 A");
    EXPECT_READY(&n, "0");
    UNIT_EQ_INT(n.npending, 1); /* B: ranks 0 and 2 */

    /* A rank whose whole blob is garbage does not stop the others. */
    round_reset(&in, 3);
    memset(in.blob[0].buf, 0xFF, 50);
    in.blob[0].len = 50;
    ask(&in, 1, "B", ar(1, HERD_INT8, HERD_SUM), 1, -1);
    run(&n, &in);
    UNIT_EQ_INT(n.malformed, 2);
    EXPECT_EVENTS(&n, "new 1 B");
    herd__negotiate_destroy(&n);
}

/* ---- stall inspector ----------------------------------------------------------------------- */

enum { WARN_MS = 60000, TIMEOUT_MS = 300000 };

/* Per-rank ready vectors for the stall scan: rank r has slot s ready when have[r][s]. */
typedef struct rank_bits {
    uint64_t words[MAXR][MAXW];
    const uint64_t *ptr[MAXR];
} rank_bits_t;

static const uint64_t *const *rank_bits(rank_bits_t *b, int nranks, int64_t slot, const int *have)
{
    memset(b->words, 0, sizeof b->words);
    for (int r = 0; r < nranks; r++) {
        if (have[r])
            b->words[r][slot / 64] |= UINT64_C(1) << (slot % 64);
        b->ptr[r] = b->words[r];
    }
    return b->ptr;
}

static void scan(herd_negotiator_t *n, const uint64_t *const *bits, int64_t now_ms)
{
    UNIT_EQ_INT_FATAL(herd__negotiate_stall_scan(n, bits, MAXW, now_ms, WARN_MS, TIMEOUT_MS), 0);
}

static void test_stall_scan_on_a_cached_slot(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 3);
    UNIT_EQ_INT(make_slot(&n, "w", ar(10, HERD_FLOAT32, HERD_SUM), 0), 0);
    EXPECT_READY(&n, "0");
    rank_bits_t b;
    const int partial[3] = {1, 0, 1};
    const uint64_t *const *bits = rank_bits(&b, 3, 0, partial);

    scan(&n, bits, 1000); /* the clock starts at the first scan that sees it */
    EXPECT_EVENTS(&n, "");
    EXPECT_READY(&n, ""); /* a scan replaces the round's results */
    scan(&n, bits, 1000 + WARN_MS - 1);
    EXPECT_EVENTS(&n, "");
    scan(&n, bits, 1000 + WARN_MS);
    EXPECT_EVENTS(&n, "stalled 0 w");
    if (n.nevents == 1) {
        UNIT_EQ_INT(n.events[0].status, HERD_ERR_STALLED);
        UNIT_EQ_STR(n.events[0].message, "tensor 'w' is stalled: submitted 60.0 s ago by rank(s) "
                                         "0, 2, never by rank(s) 1");
    }
    scan(&n, bits, 1000 + WARN_MS + 5000); /* one warning per stall */
    EXPECT_EVENTS(&n, "");
    scan(&n, bits, 1000 + TIMEOUT_MS);
    EXPECT_EVENTS(&n, "expired 0 w");
    if (n.nevents == 1)
        UNIT_EQ_STR(n.events[0].message,
                    "tensor 'w' timed out (HERD_STALL_TIMEOUT_SECONDS): submitted 300.0 s ago by "
                    "rank(s) 0, 2, never by rank(s) 1");
    UNIT_EQ_INT(n.slots[0].in_use, 1); /* the slot stays cached */
    /* After expiring, the clock starts over at the next scan that still sees it stalled. */
    const int64_t again = 1000 + TIMEOUT_MS + 10;
    scan(&n, bits, again);
    EXPECT_EVENTS(&n, "");
    scan(&n, bits, again + WARN_MS - 1);
    EXPECT_EVENTS(&n, "");
    scan(&n, bits, again + WARN_MS);
    EXPECT_EVENTS(&n, "stalled 0 w");

    /* Ready everywhere, or nowhere, resets the clock. */
    const int all[3] = {1, 1, 1}, none[3] = {0, 0, 0};
    scan(&n, rank_bits(&b, 3, 0, all), 500000);
    EXPECT_EVENTS(&n, "");
    scan(&n, rank_bits(&b, 3, 0, partial), 600000);
    scan(&n, rank_bits(&b, 3, 0, none), 650000);
    scan(&n, rank_bits(&b, 3, 0, partial), 700000);
    scan(&n, rank_bits(&b, 3, 0, partial), 700000 + WARN_MS - 1);
    EXPECT_EVENTS(&n, "");
    scan(&n, rank_bits(&b, 3, 0, partial), 700000 + WARN_MS);
    EXPECT_EVENTS(&n, "stalled 0 w");

    /* Slots beyond the words given are not looked at. */
    scan(&n, rank_bits(&b, 3, 0, partial), 0);
    UNIT_EQ_INT(herd__negotiate_stall_scan(&n, bits, 0, 10000000, WARN_MS, TIMEOUT_MS), 0);
    EXPECT_EVENTS(&n, "");
    herd__negotiate_destroy(&n);
}

/* A slot that runs between two checks (partial at one, idle at the next, partial again much
 * later) starts a fresh stall clock: no check saw it complete, but the round that ran it did. */
static void test_stall_clock_restarts_when_the_slot_runs(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 2);
    UNIT_EQ_INT(make_slot(&n, "w", ar(10, HERD_FLOAT32, HERD_SUM), 0), 0);
    rank_bits_t b;
    const int partial[2] = {1, 0};
    scan(&n, rank_bits(&b, 2, 0, partial), 1000); /* step 1: rank 1 is late at this check */
    EXPECT_EVENTS(&n, "");
    round_in_t in;
    round_reset(&in, 2);
    bit(&in, 0); /* rank 1 catches up: the slot runs */
    run(&n, &in);
    EXPECT_READY(&n, "0");
    /* Many steps later rank 1 is late at a check again: a new stall, not a 10-minute one. */
    scan(&n, rank_bits(&b, 2, 0, partial), 1000 + 10 * TIMEOUT_MS);
    EXPECT_EVENTS(&n, "");
    scan(&n, rank_bits(&b, 2, 0, partial), 1000 + 10 * TIMEOUT_MS + WARN_MS);
    EXPECT_EVENTS(&n, "stalled 0 w");
    herd__negotiate_destroy(&n);
}

static void test_stall_scan_on_a_pending_name(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 3);
    round_in_t in;
    round_reset(&in, 3);
    ask(&in, 1, "p", ar(1, HERD_INT32, HERD_SUM), 0, -1);
    run(&n, &in);
    UNIT_EQ_INT(n.npending, 1);
    rank_bits_t b;
    const int none[3] = {0, 0, 0};
    const uint64_t *const *bits = rank_bits(&b, 3, 0, none);
    scan(&n, bits, 0);
    EXPECT_EVENTS(&n, "");
    scan(&n, bits, WARN_MS);
    EXPECT_EVENTS(&n, "stalled -1 p");
    if (n.nevents == 1)
        UNIT_EQ_STR(n.events[0].message, "tensor 'p' is stalled: submitted 60.0 s ago by rank(s) "
                                         "1, never by rank(s) 0, 2");
    scan(&n, bits, TIMEOUT_MS - 1);
    EXPECT_EVENTS(&n, "");
    scan(&n, bits, TIMEOUT_MS);
    EXPECT_EVENTS(&n, "error -11 p");
    if (n.nevents == 1) {
        UNIT_EQ_INT(n.events[0].status, HERD_ERR_STALLED);
        UNIT_EQ_INT(n.events[0].slot, -1);
        UNIT_EQ_STR(n.events[0].message,
                    "tensor 'p' timed out (HERD_STALL_TIMEOUT_SECONDS): submitted 300.0 s ago by "
                    "rank(s) 1, never by rank(s) 0, 2");
    }
    UNIT_EQ_INT(n.npending, 0); /* dropped */
    /* The late ranks now ask: a fresh pending name, not a completion. */
    round_reset(&in, 3);
    ask(&in, 0, "p", ar(1, HERD_INT32, HERD_SUM), 0, -1);
    ask(&in, 2, "p", ar(1, HERD_INT32, HERD_SUM), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "");
    UNIT_EQ_INT(n.npending, 1);
    herd__negotiate_destroy(&n);
}

static void test_stall_scan_knobs_disable(void)
{
    herd_negotiator_t n;
    herd__negotiate_init(&n, 2);
    UNIT_EQ_INT(make_slot(&n, "w", ar(10, HERD_FLOAT32, HERD_SUM), 0), 0);
    round_in_t in;
    round_reset(&in, 2);
    ask(&in, 0, "p", ar(1, HERD_INT32, HERD_SUM), 0, -1);
    run(&n, &in);
    rank_bits_t b;
    const int partial[2] = {0, 1};
    const uint64_t *const *bits = rank_bits(&b, 2, 0, partial);
    /* Both disabled: nothing, ever. */
    for (int64_t t = 0; t <= INT64_C(1000000000); t += INT64_C(250000000)) {
        UNIT_EQ_INT(herd__negotiate_stall_scan(&n, bits, 1, t, 0, 0), 0);
        EXPECT_EVENTS(&n, "");
    }
    /* Warnings off, timeout on (the clocks started at t = 0 above). */
    UNIT_EQ_INT(herd__negotiate_stall_scan(&n, bits, 1, INT64_C(1000000000) + 1, 0, 1000), 0);
    EXPECT_EVENTS(&n, "expired 0 w; error -11 p");
    herd__negotiate_destroy(&n);

    /* A timeout shorter than the warning: the timeout wins, no warning first. */
    herd__negotiate_init(&n, 2);
    UNIT_EQ_INT(make_slot(&n, "w", ar(10, HERD_FLOAT32, HERD_SUM), 0), 0);
    bits = rank_bits(&b, 2, 0, partial);
    UNIT_EQ_INT(herd__negotiate_stall_scan(&n, bits, 1, 0, 5000, 2000), 0);
    UNIT_EQ_INT(herd__negotiate_stall_scan(&n, bits, 1, 2000, 5000, 2000), 0);
    EXPECT_EVENTS(&n, "expired 0 w");
    herd__negotiate_destroy(&n);
}

/* With many ranks the message lists 16 and counts the rest. */
static void test_stall_message_with_many_ranks(void)
{
    enum { NR = 20 };
    herd_negotiator_t n;
    herd__negotiate_init(&n, NR);
    static blob_t blobs[NR];
    const char *ptrs[NR];
    size_t lens[NR];
    for (int r = 0; r < NR; r++) {
        blobs[r].len = 0;
        if (r != 19)
            encode(&blobs[r], "big", ar(1, HERD_INT8, HERD_SUM), 0, -1);
        ptrs[r] = blobs[r].len ? blobs[r].buf : NULL;
        lens[r] = blobs[r].len;
    }
    UNIT_EQ_INT_FATAL(herd__negotiate_round(&n, NULL, 0, ptrs, lens), 0);
    UNIT_EQ_INT(n.npending, 1);
    UNIT_EQ_INT(herd__negotiate_stall_scan(&n, NULL, 0, 0, 1000, 0), 0);
    UNIT_EQ_INT(herd__negotiate_stall_scan(&n, NULL, 0, 1500, 1000, 0), 0);
    EXPECT_EVENTS(&n, "stalled -1 big");
    if (n.nevents == 1)
        UNIT_EQ_STR(n.events[0].message,
                    "tensor 'big' is stalled: submitted 1.5 s ago by rank(s) 0, 1, 2, 3, 4, 5, 6, "
                    "7, 8, 9, 10, 11, 12, 13, 14, 15 and 3 more, never by rank(s) 19");
    herd__negotiate_destroy(&n);
}

/* ---- determinism ------------------------------------------------------------------------- */

/* One round's outcome, flattened for comparison. */
static void outcome(const herd_negotiator_t *n, char *buf, size_t cap)
{
    char ready[4096], events[8192];
    ready_str(n, ready, sizeof ready);
    events_str(n, events, sizeof events);
    size_t used = (size_t)snprintf(buf, cap,
                                   "ready[%s] events[%s] slots=%lld pending=%lld "
                                   "malformed=%lld msgs:",
                                   ready, events, (long long)n->nslots, (long long)n->npending,
                                   (long long)n->malformed);
    for (int64_t i = 0; i < n->nevents && used < cap; i++)
        if (n->events[i].message)
            used += (size_t)snprintf(buf + used, cap - used, " %s |", n->events[i].message);
}

static int ready_invariants_hold(const herd_negotiator_t *n)
{
    for (int64_t i = 0; i < n->nready; i++) {
        int64_t s = n->ready[i];
        if (s < 0 || s >= n->nslots || !n->slots[s].in_use)
            return 0;
        if (i > 0) {
            int64_t p = n->ready[i - 1];
            int64_t pp = n->slots[p].priority, ps = n->slots[s].priority;
            if (pp > ps || (pp == ps && p >= s)) /* sorted, and no slot twice */
                return 0;
        }
    }
    return 1;
}

static void random_round(unit_rng_t *rng, const herd_negotiator_t *n, round_in_t *in)
{
    static const char *const pool[] = {"w0",  "w1",   "w2",    "w3",   "w4", "w5", "w6",
                                       "w7",  "w8",   "w9",    "b0",   "b1", "b2", "b3",
                                       "emb", "head", "x.y.z", "norm", "k",  "v"};
    const int npool = (int)(sizeof pool / sizeof pool[0]);
    round_reset(in, n->nranks);
    for (int r = 0; r < n->nranks; r++) {
        int nreq = (int)unit_rng_below(rng, 4);
        for (int k = 0; k < nreq; k++) {
            int i = (int)unit_rng_below(rng, (uint64_t)npool);
            herd_attrs_t a = unit_rng_below(rng, 8) == 0
                                 ? bc(i, HERD_FLOAT32, (int)unit_rng_below(rng, 2))
                                 : ar(i + (unit_rng_below(rng, 10) == 0), HERD_FLOAT32, HERD_SUM);
            /* Sometimes the rank had the name cached (it names its slot), sometimes it names a
             * slot at random, stale or out of range. */
            int64_t evict = -1;
            uint64_t dice = unit_rng_below(rng, 10);
            if (dice < 2)
                evict = slot_of(n, pool[i]);
            else if (dice == 2)
                evict = (int64_t)unit_rng_below(rng, (uint64_t)n->nslots + 2);
            /* Ranks disagree about declaration order on purpose. */
            int64_t prio = (int64_t)((i * (r + 3)) % npool);
            ask(in, r, pool[i], a, prio, evict);
        }
    }
    /* Bits only for slots no rank asks about by name this round: a rank has one operation per
     * name in flight, so it cannot both set a name's bit and announce it by name. */
    for (int64_t s = 0; s < n->nslots; s++) {
        if (!n->slots[s].in_use || unit_rng_below(rng, 2))
            continue;
        int asked = 0;
        for (int r = 0; r < n->nranks && !asked; r++) {
            size_t off = 0;
            herd_wire_request_t req;
            while (!asked && herd__wire_decode(in->blob[r].buf, in->blob[r].len, &off, &req) == 1)
                asked = req.name_len == n->slots[s].name_len &&
                        memcmp(req.name, n->slots[s].name, req.name_len) == 0;
        }
        if (!asked)
            bit(in, s);
    }
}

static void determinism(int nranks)
{
    herd_negotiator_t a, b;
    herd__negotiate_init(&a, nranks);
    herd__negotiate_init(&b, nranks);
    unit_rng_t rng = {UINT64_C(0xC0FFEE) + (uint64_t)nranks};
    round_in_t *in = calloc(1, sizeof *in);
    round_in_t *copy = calloc(1, sizeof *copy);
    UNIT_EQ_INT_FATAL(in != NULL && copy != NULL, 1);
    static char oa[16384], ob[16384];
    int differ = 0, broken = 0, made = 0, errors = 0, evictions = 0;
    for (int round = 0; round < 400; round++) {
        random_round(&rng, &a, in);
        *copy = *in; /* b decodes from its own copy of the bytes */
        if (round % 97 == 96) {
            herd__negotiate_fail_pending(&a, HERD_ERR_SHUTDOWN, "stop");
            herd__negotiate_fail_pending(&b, HERD_ERR_SHUTDOWN, "stop");
        } else {
            run(&a, in);
            run(&b, copy);
        }
        outcome(&a, oa, sizeof oa);
        outcome(&b, ob, sizeof ob);
        if (strcmp(oa, ob) != 0 && differ++ == 0)
            UNIT_FAIL("round %d differs:\n  %s\n  %s", round, oa, ob);
        if (!ready_invariants_hold(&a) && broken++ == 0)
            UNIT_FAIL("round %d: ready list not sorted/unique/in use: %s", round, oa);
        for (int64_t i = 0; i < a.nevents; i++) {
            made += a.events[i].type == HERD_EVENT_NEW_SLOT;
            errors += a.events[i].type == HERD_EVENT_ERROR;
            evictions += a.events[i].type == HERD_EVENT_EVICTED;
        }
    }
    UNIT_EQ_INT(differ, 0);
    UNIT_EQ_INT(broken, 0);
    /* The generator really exercised every path. */
    UNIT_EQ_INT(made > 10, 1);
    UNIT_EQ_INT(evictions > 5, 1);
    if (nranks > 1) { /* one rank can neither disagree nor repeat a pending name */
        UNIT_EQ_INT(errors > 5, 1);
        UNIT_EQ_INT(a.malformed > 0, 1);
    }
    free(in);
    free(copy);
    herd__negotiate_destroy(&a);
    herd__negotiate_destroy(&b);
}

/* ---- kinds beyond allreduce and broadcast, and join ----------------------------------------- */

static herd_attrs_t kind_attrs(int kind, int64_t count, int64_t row)
{
    herd_attrs_t a = ar(count, HERD_INT32, HERD_SUM);
    a.kind = kind;
    a.row = row;
    return a;
}

static void test_kind_table(void)
{
    for (int k = 0; k < HERD_NUM_KINDS; k++) {
        const herd_kind_info_t *info = herd__kind(k);
        UNIT_EQ_INT_FATAL(info != NULL && info->name != NULL, 1);
        /* A kind whose counts differ per rank cannot fuse: plans must be equal everywhere. */
        if (info->count_varies)
            UNIT_EQ_INT(info->fuses, 0);
    }
    UNIT_EQ_INT(herd__kind(-1) == NULL && herd__kind(HERD_NUM_KINDS) == NULL, 1);
    UNIT_EQ_INT(herd__kind(HERD_KIND_JOIN)->cached, 0);
    UNIT_EQ_INT(herd__kind(HERD_KIND_REDUCESCATTER)->reduces, 1);
    /* Horovod's split: 7 rows over 3 ranks is 3, 2, 2 starting at 0, 3, 5. */
    UNIT_EQ_INT(herd__rs_rows(7, 3, 0), 3);
    UNIT_EQ_INT(herd__rs_rows(7, 3, 2), 2);
    UNIT_EQ_INT(herd__rs_first_row(7, 3, 1), 3);
    UNIT_EQ_INT(herd__rs_first_row(7, 3, 2), 5);
    UNIT_EQ_INT(herd__rs_rows(2, 4, 3), 0);
}

static void test_variable_counts_agree_rows_do_not(void)
{
    herd_attrs_t a = kind_attrs(HERD_KIND_ALLGATHERV, 6, 3), b = kind_attrs(HERD_KIND_ALLGATHERV, 9, 3);
    UNIT_EQ_INT(herd__attrs_agree(&a, &b), 1); /* counts are exchanged, not checked */
    b.row = 9;
    UNIT_EQ_INT(herd__attrs_agree(&a, &b), 0);
    herd_attrs_t c = kind_attrs(HERD_KIND_ALLGATHER, 6, 1), d = kind_attrs(HERD_KIND_ALLGATHER, 9, 1);
    UNIT_EQ_INT(herd__attrs_agree(&c, &d), 0);
    char out[200];
    herd__attrs_describe(&a, out, sizeof out);
    UNIT_EQ_STR(out, "allgatherv of 6 int32 in rows of 3");
    herd_attrs_t e = kind_attrs(HERD_KIND_BARRIER, 0, 1);
    herd__attrs_describe(&e, out, sizeof out);
    UNIT_EQ_STR(out, "barrier");
    herd_attrs_t f = kind_attrs(HERD_KIND_REDUCESCATTER, 8, 2);
    f.op = HERD_MAX;
    herd__attrs_describe(&f, out, sizeof out);
    UNIT_EQ_STR(out, "reducescatter of 8 int32 in rows of 2 (max)");
}

static void test_variable_kinds_complete_with_different_counts(void)
{
    herd_negotiator_t n;
    UNIT_EQ_INT_FATAL(herd__negotiate_init(&n, 3), 0);
    round_in_t in;
    round_reset(&in, 3);
    for (int r = 0; r < 3; r++)
        ask(&in, r, "agv", kind_attrs(HERD_KIND_ALLGATHERV, 3 * r, 3), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 0 agv");
    EXPECT_READY(&n, "0");
    /* A record whose count is not a multiple of its row is malformed. */
    round_reset(&in, 3);
    ask(&in, 1, "bad", kind_attrs(HERD_KIND_ALLGATHERV, 4, 3), 0, -1);
    run(&n, &in);
    UNIT_EQ_INT(n.malformed, 1);
    herd__negotiate_destroy(&n);
}

static herd_attrs_t join_attrs(void)
{
    return kind_attrs(HERD_KIND_JOIN, 0, 1);
}

static void test_join_lets_names_complete_without_the_joined(void)
{
    herd_negotiator_t n;
    UNIT_EQ_INT_FATAL(herd__negotiate_init(&n, 3), 0);
    round_in_t in;
    /* "x" is cached first, with every rank. */
    round_reset(&in, 3);
    for (int r = 0; r < 3; r++)
        ask(&in, r, "x", ar(4, HERD_FLOAT32, HERD_SUM), 0, -1);
    run(&n, &in);
    EXPECT_READY(&n, "0");
    /* Rank 2 asks for "y"; rank 0 asks too; rank 1 joins in the same round (after them). */
    round_reset(&in, 3);
    ask(&in, 2, "y", ar(2, HERD_INT64, HERD_MAX), 7, -1);
    ask(&in, 0, "y", ar(2, HERD_INT64, HERD_MAX), 3, -1);
    ask(&in, 1, "herd.join", join_attrs(), 1, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 1 y");
    EXPECT_READY(&n, "1");
    UNIT_EQ_INT(n.njoined, 1);
    UNIT_EQ_INT(n.joined[1], 1);
    UNIT_EQ_INT(n.slots[1].priority, 3); /* rank 0's */
    /* Rank 0 joins; a name only rank 2 asks for completes at once, with rank 2's priority. */
    round_reset(&in, 3);
    ask(&in, 0, "herd.join", join_attrs(), 1, -1);
    ask(&in, 2, "z", ar(1, HERD_FLOAT64, HERD_SUM), 9, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 2 z");
    UNIT_EQ_INT(n.slots[2].priority, 9);
    UNIT_EQ_INT(n.njoined, 2);
    /* A second join from a joined rank is malformed. */
    round_reset(&in, 3);
    ask(&in, 0, "herd.join", join_attrs(), 1, -1);
    run(&n, &in);
    UNIT_EQ_INT(n.malformed, 1);
    UNIT_EQ_INT(n.njoined, 2);
    /* The last join: every join completes, naming rank 2, and nothing runs in that round even
     * though every bit is set (the joined ranks' all-ones). */
    round_reset(&in, 3);
    bit(&in, 0);
    bit(&in, 1);
    bit(&in, 2);
    ask(&in, 2, "herd.join", join_attrs(), 1, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "joined 2");
    EXPECT_READY(&n, "");
    UNIT_EQ_INT(n.njoined, 0);
    UNIT_EQ_INT(n.joined[0] + n.joined[1] + n.joined[2], 0);
    herd__negotiate_destroy(&n);
}

static void test_join_completes_names_pending_before(void)
{
    herd_negotiator_t n;
    UNIT_EQ_INT_FATAL(herd__negotiate_init(&n, 2), 0);
    round_in_t in;
    round_reset(&in, 2);
    ask(&in, 0, "w", bc(3, HERD_UINT8, 0), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "");
    UNIT_EQ_INT(n.npending, 1);
    round_reset(&in, 2);
    ask(&in, 1, "herd.join", join_attrs(), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 0 w");
    EXPECT_READY(&n, "0");
    UNIT_EQ_INT(n.npending, 0);
    /* While rank 1 is joined, whatever rank 0 asks for completes alone. */
    round_reset(&in, 2);
    ask(&in, 0, "m", ar(3, HERD_UINT8, HERD_SUM), 0, -1);
    run(&n, &in);
    EXPECT_EVENTS(&n, "new 1 m");
    herd__negotiate_destroy(&n);
}

static void test_determinism(void)
{
    for (int nranks = 1; nranks <= 3; nranks++)
        determinism(nranks);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"wire_round_trip", test_wire_round_trip},
        {"wire_encode_refuses", test_wire_encode_refuses},
        {"wire_decode_rejects_malformed", test_wire_decode_rejects_malformed},
        {"wire_decode_rejects_nul_in_name", test_wire_decode_rejects_nul_in_name},
        {"wire_decode_fuzz", test_wire_decode_fuzz},
        {"attrs_describe", test_attrs_describe},
        {"attrs_agree", test_attrs_agree},
        {"all_ranks_in_one_round", test_all_ranks_in_one_round},
        {"ranks_in_different_rounds", test_ranks_in_different_rounds},
        {"mismatch_two_ranks", test_mismatch_two_ranks},
        {"mismatch_three_ranks", test_mismatch_three_ranks},
        {"gpu_ordinals_may_differ", test_gpu_ordinals_may_differ},
        {"mismatch_message_with_longest_name", test_mismatch_message_with_longest_name},
        {"bits_make_cached_slots_ready", test_bits_make_cached_slots_ready},
        {"ready_order_follows_rank0_priority", test_ready_order_follows_rank0_priority},
        {"ready_order_many_slots", test_ready_order_many_slots},
        {"eviction_and_slot_reuse", test_eviction_and_slot_reuse},
        {"mismatch_on_a_cached_name", test_mismatch_on_a_cached_name},
        {"fail_pending", test_fail_pending},
        {"duplicate_request_is_malformed", test_duplicate_request_is_malformed},
        {"malformed_blob_drops_only_its_rest", test_malformed_blob_drops_only_its_rest},
        {"stall_scan_on_a_cached_slot", test_stall_scan_on_a_cached_slot},
        {"stall_clock_restarts_when_the_slot_runs", test_stall_clock_restarts_when_the_slot_runs},
        {"stall_scan_on_a_pending_name", test_stall_scan_on_a_pending_name},
        {"stall_scan_knobs_disable", test_stall_scan_knobs_disable},
        {"stall_message_with_many_ranks", test_stall_message_with_many_ranks},
        {"determinism", test_determinism},
        {"kind_table", test_kind_table},
        {"variable_counts_agree_rows_do_not", test_variable_counts_agree_rows_do_not},
        {"variable_kinds_complete_with_different_counts",
         test_variable_kinds_complete_with_different_counts},
        {"join_lets_names_complete_without_the_joined",
         test_join_lets_names_complete_without_the_joined},
        {"join_completes_names_pending_before", test_join_completes_names_pending_before},
        CU_TEST_INFO_NULL,
    };
    return unit_run("negotiate", tests);
}
