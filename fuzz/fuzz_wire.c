/* fuzz_wire.c - libFuzzer target for the bytes one rank receives from another: the name-request
 * decoder (herd__wire_decode) and the replicated negotiator that consumes them
 * (herd__negotiate_round, herd__negotiate_stall_scan, herd__negotiate_fail_pending).
 *
 * A malformed message must be an error, never an out-of-bounds access: every blob is copied into
 * its own heap block of exactly its length, so ASan sees a read one byte past it.
 *
 * Input layout (fuzz/make_corpus.c writes valid examples):
 *   byte 0        nranks = 1 + byte % 8
 *   byte 1        stall warning after byte * 100 ms (0: no warnings)
 *   byte 2        stall timeout after byte * 100 ms (0: never)
 *   then rounds, until the input ends (at most MAX_ROUNDS):
 *     ctrl  u8    bit 0: run a stall scan after the round; bit 1: pass one ready word more than
 *                 the negotiator has slots for; bit 2: one word fewer; bits 3+4 both set: fail
 *                 every pending name afterwards (as at shutdown); bits 5-7: the clock advances
 *                 by that * 250 ms before the round
 *     seed  u64   ready bits: 0 = every slot ready on every rank, 1 = ready on rank 0 only,
 *                 anything else = pseudo-random bits per rank (the AND is what the round gets)
 *     nranks times: len u16 (little endian), then len bytes of that rank's encoded requests
 *                 (cut short at the end of the input)
 *
 * Two negotiators run side by side over the same inputs: like two ranks, they must reach the
 * same decisions. Any broken invariant aborts, which libFuzzer records as a crash.
 * FUZZ_WIRE_TRACE=1 prints every round's decisions (to read a seed or a crash). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "negotiate.h"
#include "request_queue.h"

enum { MAX_RANKS = 8, MAX_ROUNDS = 64 };

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_wire: invariant broken at %s:%d: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                                    \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* ---- the decoder alone ------------------------------------------------------------------ */

/* Decodes every record of buf[0..len), checking what a successful decode promises, and that
 * encoding a decoded record gives back exactly its bytes. */
static void decode_all(const char *buf, size_t len)
{
    size_t off = 0;
    herd_wire_request_t req;
    int got;
    for (;;) {
        size_t before = off;
        got = herd__wire_decode(buf, len, &off, &req);
        if (got != 1) {
            CHECK(off == before); /* the end and an error leave the offset alone */
            CHECK(got == 0 ? off == len : got == -1);
            break;
        }
        CHECK(off > before && off <= len);
        CHECK(req.name_len >= 1 && req.name_len <= HERD_MAX_NAME_LEN);
        CHECK(req.name == buf + before + HERD_WIRE_HEADER_BYTES);
        CHECK(off - before == HERD_WIRE_HEADER_BYTES + req.name_len);
        CHECK(req.attrs.kind >= 0 && req.attrs.kind < HERD_NUM_KINDS);
        CHECK(req.attrs.count >= 0 && req.priority >= 0 && req.evict_slot >= -1);
        char again[HERD_WIRE_HEADER_BYTES + HERD_MAX_NAME_LEN];
        size_t used = 0;
        CHECK(herd__wire_encode(again, sizeof again, &used, &req) == 0);
        CHECK(used == off - before && memcmp(again, buf + before, used) == 0);
        char text[256];
        herd__attrs_describe(&req.attrs, text, sizeof text);
        CHECK(herd__attrs_agree(&req.attrs, &req.attrs));
    }
}

/* One record at every starting offset: the decoder must stay inside buf whatever it lands on. */
static void decode_everywhere(const char *buf, size_t len)
{
    for (size_t start = 0; start <= len; start++) {
        size_t off = start;
        herd_wire_request_t req;
        if (herd__wire_decode(buf, len, &off, &req) == 1)
            CHECK(req.name >= buf && req.name + req.name_len <= buf + len && off <= len);
    }
}

/* ---- the negotiator --------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void observe(void *ctx, int rank, const char *name, size_t name_len)
{
    const herd_negotiator_t *n = ctx;
    CHECK(rank >= 0 && rank < n->nranks);
    CHECK(name != NULL && name_len >= 1 && name_len <= HERD_MAX_NAME_LEN);
}

/* What every round and scan promises about the negotiator and its results. */
static void check_state(const herd_negotiator_t *n)
{
    CHECK(n->nslots >= 0 && n->nslots <= n->slots_cap);
    CHECK(n->nfree >= 0 && n->nfree <= n->nslots);
    CHECK(n->npending >= 0);
    int64_t in_use = 0;
    for (int64_t s = 0; s < n->nslots; s++) {
        const herd_slot_info_t *si = &n->slots[s];
        if (!si->in_use)
            continue;
        in_use++;
        CHECK(si->name != NULL && si->name_len >= 1 && si->name_len <= HERD_MAX_NAME_LEN);
        CHECK(si->name[si->name_len] == '\0');
    }
    CHECK(in_use + n->nfree == n->nslots);
    int joined = 0;
    for (int r = 0; r < n->nranks; r++)
        joined += n->joined[r] != 0;
    CHECK(joined == n->njoined && n->njoined < n->nranks);
    for (int64_t i = 0; i < n->nfree; i++) {
        int64_t s = n->free_slots[i];
        CHECK(s >= 0 && s < n->nslots && !n->slots[s].in_use);
    }
    CHECK(n->nready >= 0 && n->nready <= n->nslots);
    for (int64_t i = 0; i < n->nready; i++) {
        int64_t s = n->ready[i];
        CHECK(s >= 0 && s < n->nslots && n->slots[s].in_use);
        for (int64_t j = 0; j < i; j++)
            CHECK(n->ready[j] != s);
        if (i > 0) {
            const herd_slot_info_t *a = &n->slots[n->ready[i - 1]], *b = &n->slots[s];
            CHECK(a->priority < b->priority ||
                  (a->priority == b->priority && n->ready[i - 1] < s));
        }
    }
    CHECK(n->nevents >= 0);
    for (int64_t i = 0; i < n->nevents; i++) {
        const herd_neg_event_t *ev = &n->events[i];
        CHECK(ev->type >= HERD_EVENT_NEW_SLOT && ev->type <= HERD_EVENT_JOINED);
        if (ev->type == HERD_EVENT_JOINED) {
            /* Every rank joined: the last one is named, and nothing runs in that round. */
            CHECK(ev->slot >= 0 && ev->slot < n->nranks && n->nready == 0);
            continue;
        }
        CHECK(ev->name != NULL && ev->name_len >= 1 && ev->name_len <= HERD_MAX_NAME_LEN);
        if (ev->type == HERD_EVENT_NEW_SLOT)
            CHECK(ev->slot >= 0 && ev->slot < n->nslots);
        if (ev->type == HERD_EVENT_EVICTED || ev->type == HERD_EVENT_EXPIRED)
            CHECK(ev->slot >= 0 && ev->slot < n->nslots);
        if (ev->type == HERD_EVENT_ERROR || ev->type == HERD_EVENT_STALLED ||
            ev->type == HERD_EVENT_EXPIRED)
            CHECK(ev->message != NULL && strlen(ev->message) > 0);
        if (ev->type == HERD_EVENT_ERROR)
            CHECK(ev->status < 0);
    }
}

static void trace(const herd_negotiator_t *n, const char *what, int round)
{
    static int on = -1;
    if (on < 0)
        on = getenv("FUZZ_WIRE_TRACE") != NULL;
    if (!on)
        return;
    fprintf(stderr, "%s %d: nranks %d, slots %lld (%lld free), pending %lld, malformed %lld\n",
            what, round, n->nranks, (long long)n->nslots, (long long)n->nfree,
            (long long)n->npending, (long long)n->malformed);
    for (int64_t i = 0; i < n->nready; i++)
        fprintf(stderr, "  ready slot %lld '%s'\n", (long long)n->ready[i],
                n->slots[n->ready[i]].name);
    static const char *const types[] = {"NEW_SLOT", "EVICTED", "ERROR",
                                        "STALLED",  "EXPIRED", "JOINED"};
    for (int64_t i = 0; i < n->nevents; i++) {
        const herd_neg_event_t *ev = &n->events[i];
        fprintf(stderr, "  %s slot %lld '%.*s' status %d%s%s\n", types[ev->type],
                (long long)ev->slot, (int)ev->name_len, ev->name, ev->status,
                ev->message ? ": " : "", ev->message ? ev->message : "");
    }
}

/* Two replicas fed the same inputs decide the same things. */
static void check_same(const herd_negotiator_t *a, const herd_negotiator_t *b)
{
    CHECK(a->nslots == b->nslots && a->nfree == b->nfree && a->npending == b->npending);
    CHECK(a->nready == b->nready && a->nevents == b->nevents);
    CHECK(a->malformed == b->malformed);
    CHECK(a->njoined == b->njoined && a->last_joined == b->last_joined);
    for (int64_t i = 0; i < a->nready; i++)
        CHECK(a->ready[i] == b->ready[i]);
    for (int64_t i = 0; i < a->nevents; i++) {
        const herd_neg_event_t *x = &a->events[i], *y = &b->events[i];
        CHECK(x->type == y->type && x->slot == y->slot && x->status == y->status);
        CHECK(x->name_len == y->name_len && memcmp(x->name, y->name, x->name_len) == 0);
        CHECK((x->message == NULL) == (y->message == NULL));
        if (x->message != NULL)
            CHECK(strcmp(x->message, y->message) == 0);
    }
}

/* Every rank's ready vector (exactly `words` words each, so ASan sees a read past the end)
 * and their AND. Seed 0: every slot ready everywhere; 1: ready on rank 0 only; else random. */
typedef struct ready_bits {
    uint64_t *rank[MAX_RANKS];
    uint64_t *and_bits;
} ready_bits_t;

static void make_bits(ready_bits_t *b, int nranks, int64_t words, uint64_t seed,
                      uint64_t *state)
{
    size_t n = words > 0 ? (size_t)words : 1;
    b->and_bits = malloc(n * sizeof *b->and_bits);
    CHECK(b->and_bits != NULL);
    for (int r = 0; r < nranks; r++) {
        b->rank[r] = malloc(n * sizeof *b->rank[r]);
        CHECK(b->rank[r] != NULL);
        for (size_t w = 0; w < n; w++) {
            uint64_t bits = seed == 0   ? ~UINT64_C(0)
                            : seed == 1 ? (r == 0 ? ~UINT64_C(0) : 0)
                                        : splitmix64(state);
            b->rank[r][w] = bits;
            b->and_bits[w] = r == 0 ? bits : (b->and_bits[w] & bits);
        }
    }
}

static void free_bits(ready_bits_t *b, int nranks)
{
    for (int r = 0; r < nranks; r++)
        free(b->rank[r]);
    free(b->and_bits);
}

static uint16_t read_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint64_t read_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void run_negotiators(const uint8_t *data, size_t size)
{
    if (size < 3)
        return;
    int nranks = 1 + data[0] % MAX_RANKS;
    int64_t warn_ms = (int64_t)data[1] * 100, timeout_ms = (int64_t)data[2] * 100;
    size_t pos = 3;

    herd_negotiator_t rep[2];
    for (int k = 0; k < 2; k++) {
        CHECK(herd__negotiate_init(&rep[k], nranks) == 0);
        rep[k].observe = observe;
        rep[k].observe_ctx = &rep[k];
    }
    int64_t now_ms = 1000;
    for (int round = 0; round < MAX_ROUNDS && pos + 9 <= size; round++) {
        uint8_t ctrl = data[pos];
        uint64_t seed = read_u64(data + pos + 1);
        pos += 9;
        now_ms += (int64_t)(ctrl >> 5) * 250;

        /* Every rank's blob in a block of its own, exactly as long as the blob. */
        char *blobs[MAX_RANKS] = {0};
        size_t lens[MAX_RANKS] = {0};
        for (int r = 0; r < nranks && pos < size; r++) {
            size_t len = pos + 2 <= size ? read_u16(data + pos) : 0;
            pos += 2;
            if (pos > size)
                pos = size;
            if (len > size - pos)
                len = size - pos;
            if (len > 0) {
                blobs[r] = malloc(len);
                CHECK(blobs[r] != NULL);
                memcpy(blobs[r], data + pos, len);
                lens[r] = len;
                pos += len;
                decode_all(blobs[r], len);
            }
        }

        /* Each rank's ready vector, and their AND: what the real round's allreduce yields. */
        uint64_t state = seed;
        int64_t words = herd__negotiate_words(&rep[0]);
        int64_t and_words = words + ((ctrl & 2) ? 1 : 0) - ((ctrl & 4) && words > 0 ? 1 : 0);
        ready_bits_t bits;
        make_bits(&bits, nranks, words > and_words ? words : and_words, seed, &state);

        const char *const *blob_ptrs = (const char *const *)blobs;
        for (int k = 0; k < 2; k++) {
            int rc = herd__negotiate_round(&rep[k], bits.and_bits, and_words, blob_ptrs, lens);
            CHECK(rc == 0 || rc == HERD_ERR_NO_MEMORY);
            check_state(&rep[k]);
        }
        check_same(&rep[0], &rep[1]);
        trace(&rep[0], "round", round);

        if (ctrl & 1) {
            /* The scan reads as many words per rank as the negotiator needs now. */
            int64_t scan_words = herd__negotiate_words(&rep[0]);
            ready_bits_t scan;
            make_bits(&scan, nranks, scan_words, seed, &state);
            for (int k = 0; k < 2; k++) {
                int rc = herd__negotiate_stall_scan(&rep[k], (const uint64_t *const *)scan.rank,
                                                    scan_words, now_ms, warn_ms, timeout_ms);
                CHECK(rc == 0 || rc == HERD_ERR_NO_MEMORY);
                check_state(&rep[k]);
            }
            check_same(&rep[0], &rep[1]);
            trace(&rep[0], "stall scan", round);
            free_bits(&scan, nranks);
        }
        if ((ctrl & 0x18) == 0x18) {
            for (int k = 0; k < 2; k++) {
                int rc = herd__negotiate_fail_pending(&rep[k], HERD_ERR_SHUTDOWN, "shut down");
                CHECK(rc == 0 || rc == HERD_ERR_NO_MEMORY);
                CHECK(rep[k].npending == 0);
                check_state(&rep[k]);
                for (int64_t i = 0; i < rep[k].nevents; i++)
                    CHECK(rep[k].events[i].type == HERD_EVENT_ERROR &&
                          rep[k].events[i].status == HERD_ERR_SHUTDOWN);
            }
            check_same(&rep[0], &rep[1]);
            trace(&rep[0], "fail pending", round);
        }

        free_bits(&bits, nranks);
        for (int r = 0; r < MAX_RANKS; r++)
            free(blobs[r]);
    }
    herd__negotiate_destroy(&rep[0]);
    herd__negotiate_destroy(&rep[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The whole input as one stream, and from every offset, in a block of its own size. */
    char *copy = malloc(size ? size : 1);
    CHECK(copy != NULL);
    if (size > 0)
        memcpy(copy, data, size);
    decode_all(size > 3 ? copy + 3 : copy, size > 3 ? size - 3 : 0);
    decode_everywhere(copy, size);
    free(copy);
    /* A NULL buffer is "nothing received" when empty and an error otherwise. */
    size_t off = 0;
    herd_wire_request_t req;
    CHECK(herd__wire_decode(NULL, 0, &off, &req) == 0);
    CHECK(herd__wire_decode(NULL, 1, &off, &req) == -1);

    run_negotiators(data, size);
    return 0;
}
