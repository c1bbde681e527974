/* negotiate.c - the replicated negotiation state machine; see negotiate.h. Allocation happens only
 * when a name is first seen, a slot is made or a round reports an error: the steady state (cached
 * slots, bits only) allocates nothing. */
#include "negotiate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "herd.h"
#include "op_kind.h"

struct herd_pending_name {
    UT_hash_handle hh;
    int64_t priority; /* rank 0's, once rank 0 has asked; else the lowest asking rank's */
    int priority_rank; /* the rank `priority` came from */
    int64_t stall_since_ms; /* as in herd_slot_info_t; -1 until a stall check sees it */
    int stall_warned;
    int64_t arrival;  /* order of first sight, for a stable report */
    int nhave;
    uint8_t *have;        /* per rank: asked yet */
    herd_attrs_t *attrs;  /* per rank */
    size_t name_len;
    char name[];
};

/* ---- wire format ---------------------------------------------------------------------------
 * offset 0 u16 name_len | 2 u8 kind | 3 u8 dtype | 4 u8 op | 5..7 zero | 8 i32 root |
 * 12 i32 device | 16 i64 count | 24 i64 priority | 32 i64 evict_slot | 40 i64 row |
 * 48 name bytes.
 * Host byte order: herd's ranks run one build on one architecture. */

static void put(char *p, const void *v, size_t n)
{
    memcpy(p, v, n);
}

int herd__wire_encode(char *buf, size_t cap, size_t *used, const herd_wire_request_t *req)
{
    size_t need = HERD_WIRE_HEADER_BYTES + req->name_len;
    if (*used > cap || cap - *used < need || req->name_len == 0 ||
        req->name_len > HERD_MAX_NAME_LEN)
        return -1;
    char *p = buf + *used;
    memset(p, 0, HERD_WIRE_HEADER_BYTES);
    uint16_t len16 = (uint16_t)req->name_len;
    uint8_t kind = (uint8_t)req->attrs.kind, dtype = (uint8_t)req->attrs.dtype,
            op = (uint8_t)req->attrs.op;
    put(p + 0, &len16, 2);
    put(p + 2, &kind, 1);
    put(p + 3, &dtype, 1);
    put(p + 4, &op, 1);
    put(p + 8, &req->attrs.root, 4);
    put(p + 12, &req->attrs.device, 4);
    put(p + 16, &req->attrs.count, 8);
    put(p + 24, &req->priority, 8);
    put(p + 32, &req->evict_slot, 8);
    put(p + 40, &req->attrs.row, 8);
    memcpy(p + HERD_WIRE_HEADER_BYTES, req->name, req->name_len);
    *used += need;
    return 0;
}

int herd__wire_decode(const char *buf, size_t len, size_t *offset, herd_wire_request_t *out)
{
    if (*offset == len)
        return 0;
    if (buf == NULL || *offset > len || len - *offset < HERD_WIRE_HEADER_BYTES)
        return -1;
    const char *p = buf + *offset;
    uint16_t len16;
    uint8_t kind, dtype, op, zero[3];
    memcpy(&len16, p + 0, 2);
    memcpy(&kind, p + 2, 1);
    memcpy(&dtype, p + 3, 1);
    memcpy(&op, p + 4, 1);
    memcpy(zero, p + 5, 3);
    herd_wire_request_t r;
    memcpy(&r.attrs.root, p + 8, 4);
    memcpy(&r.attrs.device, p + 12, 4);
    memcpy(&r.attrs.count, p + 16, 8);
    memcpy(&r.priority, p + 24, 8);
    memcpy(&r.evict_slot, p + 32, 8);
    memcpy(&r.attrs.row, p + 40, 8);
    if (len16 == 0 || len16 > HERD_MAX_NAME_LEN ||
        len - *offset - HERD_WIRE_HEADER_BYTES < (size_t)len16)
        return -1;
    /* Names come from C strings: a NUL inside one is a corrupt record. */
    if (memchr(p + HERD_WIRE_HEADER_BYTES, '\0', len16) != NULL)
        return -1;
    if (zero[0] || zero[1] || zero[2] || kind >= HERD_NUM_KINDS || !herd__dtype_valid(dtype) ||
        !herd__op_valid(op) || r.attrs.count < 0 || r.evict_slot < -1 || r.priority < 0 ||
        r.attrs.device < HERD_DEVICE_CPU)
        return -1;
    const herd_kind_info_t *k = herd__kind(kind);
    if (k->has_root ? r.attrs.root < 0 : r.attrs.root != -1)
        return -1;
    if (k->has_row ? r.attrs.row < 1 || r.attrs.count % r.attrs.row != 0 : r.attrs.row != 1)
        return -1;
    if (!k->reduces && op != HERD_SUM)
        return -1;
    r.attrs.kind = kind;
    r.attrs.dtype = dtype;
    r.attrs.op = op;
    r.name = p + HERD_WIRE_HEADER_BYTES;
    r.name_len = len16;
    *offset += HERD_WIRE_HEADER_BYTES + len16;
    *out = r;
    return 1;
}

/* ---- attributes ------------------------------------------------------------------------- */

int herd__attrs_agree(const herd_attrs_t *a, const herd_attrs_t *b)
{
    if (a->kind != b->kind || !herd__kind_valid(a->kind))
        return 0;
    const herd_kind_info_t *k = herd__kind(a->kind);
    return (k->count_varies || a->count == b->count) && a->row == b->row &&
           a->dtype == b->dtype && a->op == b->op && a->root == b->root &&
           (a->device >= 0) == (b->device >= 0);
}

void herd__attrs_describe(const herd_attrs_t *a, char *out, size_t cap)
{
    const char *where = a->device >= 0 ? " on GPU" : "";
    const herd_kind_info_t *k = herd__kind(a->kind);
    if (k == NULL) {
        snprintf(out, cap, "an operation of unknown kind %d", (int)a->kind);
        return;
    }
    if (!k->has_data) {
        snprintf(out, cap, "%s", k->name);
        return;
    }
    char extra[96] = "";
    if (k->reduces)
        snprintf(extra, sizeof extra, " (%s)", herd__op_name(a->op));
    else if (k->has_root)
        snprintf(extra, sizeof extra, " from root %d", (int)a->root);
    char rows[64] = "";
    if (k->has_row)
        snprintf(rows, sizeof rows, " in rows of %lld", (long long)a->row);
    snprintf(out, cap, "%s of %lld %s%s%s%s", k->name, (long long)a->count,
             herd__dtype_name(a->dtype), rows, extra, where);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

int herd__negotiate_init(herd_negotiator_t *n, int nranks)
{
    memset(n, 0, sizeof *n);
    n->nranks = nranks;
    n->last_joined = -1;
    n->joined = calloc((size_t)nranks, 1);
    return n->joined == NULL ? HERD_ERR_NO_MEMORY : 0;
}

static void free_pending(herd_pending_name_t *p)
{
    free(p->have);
    free(p->attrs);
    free(p);
}

static void clear_round(herd_negotiator_t *n)
{
    for (int64_t i = 0; i < n->nmessages; i++)
        free(n->messages[i]);
    n->nmessages = 0;
    n->nready = 0;
    n->nevents = 0;
}

void herd__negotiate_destroy(herd_negotiator_t *n)
{
    clear_round(n);
    herd_pending_name_t *p, *tmp;
    HASH_ITER(hh, n->pending, p, tmp) {
        HASH_DEL(n->pending, p);
        free_pending(p);
    }
    for (int64_t s = 0; s < n->nslots; s++)
        free(n->slots[s].name);
    free(n->slots);
    free(n->free_slots);
    free(n->ready);
    free(n->events);
    free(n->messages);
    free(n->joined);
    memset(n, 0, sizeof *n);
}

/* ---- growth helpers (allocate only off the steady-state path) ---------------------------- */

static int grow(void **array, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *p = realloc(*array, (size_t)c * elem);
    if (p == NULL)
        return HERD_ERR_NO_MEMORY;
    *array = p;
    *cap = c;
    return 0;
}

static int push_event(herd_negotiator_t *n, herd_neg_event_t ev)
{
    if (grow((void **)&n->events, &n->events_cap, n->nevents + 1, sizeof ev))
        return HERD_ERR_NO_MEMORY;
    n->events[n->nevents++] = ev;
    return 0;
}

static int push_ready(herd_negotiator_t *n, int64_t slot)
{
    if (grow((void **)&n->ready, &n->ready_cap, n->nready + 1, sizeof slot))
        return HERD_ERR_NO_MEMORY;
    n->ready[n->nready++] = slot;
    return 0;
}

/* Keeps `text` (malloc'd) alive until the next round; returns it, or NULL. */
static const char *keep_message(herd_negotiator_t *n, char *text)
{
    if (text == NULL)
        return NULL;
    if (grow((void **)&n->messages, &n->messages_cap, n->nmessages + 1, sizeof text)) {
        free(text);
        return NULL;
    }
    n->messages[n->nmessages++] = text;
    return text;
}

/* ---- slots --------------------------------------------------------------------------------- */

static int64_t take_slot(herd_negotiator_t *n)
{
    if (n->nfree > 0)
        return n->free_slots[--n->nfree];
    int64_t old_cap = n->slots_cap;
    if (grow((void **)&n->slots, &n->slots_cap, n->nslots + 1, sizeof *n->slots))
        return -1;
    /* Keep the free stack able to hold every slot, so eviction never needs to allocate, and the
     * ready list too, so a round in which more slots are ready than ever before does not. */
    if (n->slots_cap != old_cap) {
        void *f = realloc(n->free_slots, sizeof *n->free_slots * (size_t)n->slots_cap);
        if (f != NULL)
            n->free_slots = f;
        if (f == NULL || grow((void **)&n->ready, &n->ready_cap, n->slots_cap, sizeof *n->ready)) {
            n->slots_cap = old_cap; /* the larger blocks are kept, only not counted */
            return -1;
        }
    }
    memset(&n->slots[n->nslots], 0, sizeof *n->slots);
    return n->nslots++;
}

static int evict(herd_negotiator_t *n, int64_t slot, const char *name, size_t name_len)
{
    if (slot < 0 || slot >= n->nslots)
        return 0;
    herd_slot_info_t *s = &n->slots[slot];
    if (!s->in_use || s->name_len != name_len || memcmp(s->name, name, name_len) != 0)
        return 0; /* already evicted this round by another rank's request */
    herd_neg_event_t ev = {.type = HERD_EVENT_EVICTED, .slot = slot};
    ev.name = keep_message(n, s->name); /* the event's name outlives the slot until next round */
    ev.name_len = s->name_len;
    s->name = NULL;
    s->in_use = 0;
    n->free_slots[n->nfree++] = slot;
    /* A correct peer never has a slot ready that it also re-announces by name, but a slot that
     * is gone must not run even if one did. */
    int64_t kept = 0;
    for (int64_t i = 0; i < n->nready; i++)
        if (n->ready[i] != slot)
            n->ready[kept++] = n->ready[i];
    n->nready = kept;
    if (ev.name == NULL)
        return HERD_ERR_NO_MEMORY;
    return push_event(n, ev);
}

/* ---- completing a name ----------------------------------------------------------------- */

/* The lowest rank that asked for the name: its attributes are the reference. */
static int first_asker(const herd_negotiator_t *n, const herd_pending_name_t *p)
{
    for (int r = 0; r < n->nranks; r++)
        if (p->have[r])
            return r;
    return -1;
}

static char *mismatch_message(const herd_negotiator_t *n, const herd_pending_name_t *p)
{
    int ref = first_asker(n, p), first_bad = -1, nbad = 0;
    for (int r = ref + 1; r < n->nranks; r++) {
        if (p->have[r] && !herd__attrs_agree(&p->attrs[ref], &p->attrs[r])) {
            if (first_bad < 0)
                first_bad = r;
            nbad++;
        }
    }
    char a0[200], ab[200];
    herd__attrs_describe(&p->attrs[ref], a0, sizeof a0);
    herd__attrs_describe(&p->attrs[first_bad], ab, sizeof ab);
    size_t cap = p->name_len + sizeof a0 + sizeof ab + 160;
    char *msg = malloc(cap);
    if (msg == NULL)
        return NULL;
    int len = snprintf(msg, cap, "tensor '%.*s': ranks disagree: rank %d sent %s, rank %d sent %s",
                       (int)p->name_len, p->name, ref, a0, first_bad, ab);
    if (nbad > 1 && len > 0 && (size_t)len < cap)
        snprintf(msg + len, cap - (size_t)len, " (and %d more ranks differ from rank %d)",
                 nbad - 1, ref);
    return msg;
}

/* Every rank has asked, or has joined (a joined rank takes part without asking). */
static int name_complete(const herd_negotiator_t *n, const herd_pending_name_t *p)
{
    if (p->nhave == n->nranks)
        return 1;
    if (p->nhave == 0 || n->njoined == 0)
        return 0;
    int missing = 0;
    for (int r = 0; r < n->nranks; r++)
        missing += !p->have[r] && !n->joined[r];
    return missing == 0;
}

static int complete_name(herd_negotiator_t *n, herd_pending_name_t *p)
{
    int rc = 0;
    int agree = 1;
    int ref = first_asker(n, p);
    for (int r = ref + 1; r < n->nranks && agree; r++)
        agree = !p->have[r] || herd__attrs_agree(&p->attrs[ref], &p->attrs[r]);
    if (!agree) {
        herd_neg_event_t ev = {.type = HERD_EVENT_ERROR, .status = HERD_ERR_MISMATCH, .slot = -1};
        char *name = malloc(p->name_len + 1);
        if (name != NULL) {
            memcpy(name, p->name, p->name_len);
            name[p->name_len] = '\0';
        }
        ev.name = keep_message(n, name);
        ev.name_len = p->name_len;
        ev.message = keep_message(n, mismatch_message(n, p));
        rc = ev.name == NULL ? HERD_ERR_NO_MEMORY : push_event(n, ev);
    } else {
        int64_t slot = take_slot(n);
        char *name = malloc(p->name_len + 1);
        if (slot < 0 || name == NULL) {
            free(name);
            rc = HERD_ERR_NO_MEMORY;
        } else {
            memcpy(name, p->name, p->name_len);
            name[p->name_len] = '\0';
            herd_slot_info_t *s = &n->slots[slot];
            s->attrs = p->attrs[ref];
            s->priority = p->priority;
            s->stall_since_ms = -1;
            s->stall_warned = 0;
            s->local = NULL;
            s->in_use = 1;
            s->name = name;
            s->name_len = p->name_len;
            herd_neg_event_t ev = {.type = HERD_EVENT_NEW_SLOT, .slot = slot, .name = s->name,
                                   .name_len = s->name_len};
            rc = push_event(n, ev);
            if (rc == 0)
                rc = push_ready(n, slot);
        }
    }
    HASH_DEL(n->pending, p);
    n->npending--;
    free_pending(p);
    return rc;
}

static int add_request(herd_negotiator_t *n, int rank, const herd_wire_request_t *req,
                       int64_t arrival)
{
    if (req->evict_slot >= 0) {
        int rc = evict(n, req->evict_slot, req->name, req->name_len);
        if (rc)
            return rc;
    }
    herd_pending_name_t *p = NULL;
    HASH_FIND(hh, n->pending, req->name, req->name_len, p);
    if (p == NULL) {
        p = calloc(1, sizeof *p + req->name_len + 1);
        if (p == NULL)
            return HERD_ERR_NO_MEMORY;
        p->have = calloc((size_t)n->nranks, 1);
        p->attrs = calloc((size_t)n->nranks, sizeof *p->attrs);
        if (p->have == NULL || p->attrs == NULL) {
            free_pending(p);
            return HERD_ERR_NO_MEMORY;
        }
        memcpy(p->name, req->name, req->name_len);
        p->name_len = req->name_len;
        p->arrival = arrival;
        p->stall_since_ms = -1;
        HASH_ADD_KEYPTR(hh, n->pending, p->name, p->name_len, p);
        n->npending++;
    }
    if (p->have[rank] || n->joined[rank]) {
        /* One op per name per rank is in flight: a repeat is a malformed stream; drop it. */
        n->malformed++;
        return 0;
    }
    p->have[rank] = 1;
    p->attrs[rank] = req->attrs;
    if (n->observe != NULL)
        n->observe(n->observe_ctx, rank, req->name, req->name_len);
    if (p->nhave == 0 || rank < p->priority_rank) {
        p->priority = req->priority;
        p->priority_rank = rank;
    }
    p->nhave++;
    if (name_complete(n, p))
        return complete_name(n, p);
    return 0;
}

/* A rank joined: names that waited only on joined ranks complete now. */
static int complete_after_join(herd_negotiator_t *n)
{
    herd_pending_name_t *p, *tmp;
    HASH_ITER(hh, n->pending, p, tmp) {
        if (name_complete(n, p)) {
            int rc = complete_name(n, p);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int add_join(herd_negotiator_t *n, int rank)
{
    if (n->joined[rank]) {
        n->malformed++; /* one join per rank until every rank has joined */
        return 0;
    }
    n->joined[rank] = 1;
    n->njoined++;
    n->last_joined = rank;
    if (n->njoined < n->nranks)
        return 0;
    herd_neg_event_t ev = {.type = HERD_EVENT_JOINED, .slot = rank, .name = "", .name_len = 0};
    memset(n->joined, 0, (size_t)n->nranks);
    n->njoined = 0;
    return push_event(n, ev);
}

/* ---- ordering: heapsort by (priority, slot); it allocates nothing, unlike glibc's qsort. ---- */

static int before(const herd_negotiator_t *n, int64_t a, int64_t b)
{
    int64_t pa = n->slots[a].priority, pb = n->slots[b].priority;
    return pa != pb ? pa < pb : a < b;
}

static void sift_down(const herd_negotiator_t *n, int64_t *v, int64_t root, int64_t count)
{
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= count)
            return;
        if (child + 1 < count && before(n, v[child], v[child + 1]))
            child++;
        if (!before(n, v[root], v[child]))
            return;
        int64_t t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

/* Slots found ready are listed in slot order, which is usually priority order already (names
 * declared in the order they are first used), or its reverse: a linear check then saves the
 * heapsort's scattered reads of every slot's priority, log n times over. */
static int sorted_already(herd_negotiator_t *n, int64_t *v, int64_t count)
{
    int64_t i = 1;
    while (i < count && before(n, v[i - 1], v[i]))
        i++;
    if (i >= count)
        return 1;
    if (i > 1)
        return 0;
    for (i = 1; i < count && before(n, v[i], v[i - 1]); i++)
        ;
    if (i < count)
        return 0;
    for (int64_t a = 0, b = count - 1; a < b; a++, b--) {
        int64_t t = v[a];
        v[a] = v[b];
        v[b] = t;
    }
    return 1;
}

static void sort_ready(herd_negotiator_t *n)
{
    int64_t *v = n->ready, count = n->nready;
    if (sorted_already(n, v, count))
        return;
    for (int64_t i = count / 2 - 1; i >= 0; i--)
        sift_down(n, v, i, count);
    for (int64_t end = count - 1; end > 0; end--) {
        int64_t t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_down(n, v, 0, end);
    }
}

int herd__negotiate_round(herd_negotiator_t *n, const uint64_t *and_bits, int64_t and_words,
                          const char *const *blobs, const size_t *blob_lens)
{
    clear_round(n);
    int64_t words = herd__negotiate_words(n);
    if (and_words < words)
        words = and_words;
    for (int64_t w = 0; w < words; w++) {
        uint64_t bits = and_bits[w];
        while (bits) {
            int64_t slot = w * 64 + __builtin_ctzll(bits);
            bits &= bits - 1;
            if (slot >= n->nslots || !n->slots[slot].in_use)
                continue;
            /* Ready everywhere: whatever stall it was in is over, even if no stall check saw
             * it complete (checks run only while ops wait). */
            n->slots[slot].stall_since_ms = -1;
            n->slots[slot].stall_warned = 0;
            if (push_ready(n, slot))
                return HERD_ERR_NO_MEMORY;
        }
    }
    if (blobs != NULL) {
        int64_t arrival = 0;
        for (int r = 0; r < n->nranks; r++) {
            size_t off = 0;
            herd_wire_request_t req;
            int got;
            while ((got = herd__wire_decode(blobs[r], blob_lens[r], &off, &req)) == 1) {
                int rc;
                if (req.attrs.kind == HERD_KIND_JOIN) {
                    int before = n->njoined;
                    rc = add_join(n, r);
                    if (rc == 0 && n->njoined > before)
                        rc = complete_after_join(n);
                } else {
                    rc = add_request(n, r, &req, arrival++);
                }
                if (rc)
                    return rc;
            }
            if (got < 0)
                n->malformed++;
        }
    }
    /* The round in which the last rank joined has no real op ready: every rank had joined, so
     * none had an op in flight, and the joined ranks' all-ones bits must not run anything. */
    for (int64_t e = 0; e < n->nevents; e++)
        if (n->events[e].type == HERD_EVENT_JOINED)
            n->nready = 0;
    sort_ready(n);
    return 0;
}

int herd__negotiate_fail_pending(herd_negotiator_t *n, int status, const char *why)
{
    clear_round(n);
    herd_pending_name_t *p, *tmp;
    int rc = 0;
    HASH_ITER(hh, n->pending, p, tmp) {
        char *name = malloc(p->name_len + 1);
        if (name != NULL) {
            memcpy(name, p->name, p->name_len);
            name[p->name_len] = '\0';
        }
        herd_neg_event_t ev = {.type = HERD_EVENT_ERROR, .status = status, .slot = -1};
        ev.name = keep_message(n, name);
        ev.name_len = p->name_len;
        size_t cap = p->name_len + strlen(why) + 64;
        char *msg = malloc(cap);
        if (msg != NULL)
            snprintf(msg, cap, "tensor '%.*s': %s", (int)p->name_len, p->name, why);
        ev.message = keep_message(n, msg);
        if (ev.name == NULL || push_event(n, ev))
            rc = HERD_ERR_NO_MEMORY;
        HASH_DEL(n->pending, p);
        n->npending--;
        free_pending(p);
    }
    return rc;
}

/* ---- stall inspector ------------------------------------------------------------------- */

/* "ranks 0, 2" from a have/not-have predicate, cut after 16 ranks. */
static void list_ranks(char *out, size_t cap, int nranks, int want,
                       int (*has)(const void *, int), const void *ctx)
{
    size_t len = 0;
    int listed = 0, more = 0;
    out[0] = '\0';
    for (int r = 0; r < nranks; r++) {
        if (has(ctx, r) != want)
            continue;
        if (listed == 16) {
            more++;
            continue;
        }
        int w = snprintf(out + len, cap - len, "%s%d", listed ? ", " : "", r);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
        listed++;
    }
    if (more > 0 && len < cap)
        snprintf(out + len, cap - len, " and %d more", more);
}

typedef struct slot_have {
    const uint64_t *const *rank_bits;
    int64_t slot;
} slot_have_t;

static int slot_has(const void *ctx, int r)
{
    const slot_have_t *h = ctx;
    return (int)((h->rank_bits[r][h->slot / 64] >> (h->slot % 64)) & 1);
}

static int pending_has(const void *ctx, int r)
{
    return ((const herd_pending_name_t *)ctx)->have[r];
}

static char *stall_message(int nranks, const char *name, size_t name_len, int64_t age_ms,
                           int (*has)(const void *, int), const void *ctx, const char *what)
{
    char have[256], missing[256];
    list_ranks(have, sizeof have, nranks, 1, has, ctx);
    list_ranks(missing, sizeof missing, nranks, 0, has, ctx);
    size_t cap = name_len + sizeof have + sizeof missing + 200;
    char *msg = malloc(cap);
    if (msg != NULL)
        snprintf(msg, cap, "tensor '%.*s' %s: submitted %.1f s ago by rank(s) %s, never by "
                 "rank(s) %s", (int)name_len, name, what, (double)age_ms / 1000.0, have,
                 missing);
    return msg;
}

/* Advances one tensor's stall clock; returns 1 to warn, 2 to expire, 0 otherwise. */
static int stall_step(int64_t *since, int *warned, int64_t now_ms, int64_t warn_ms,
                      int64_t timeout_ms)
{
    if (*since < 0)
        *since = now_ms;
    int64_t age = now_ms - *since;
    if (timeout_ms > 0 && age >= timeout_ms)
        return 2;
    if (warn_ms > 0 && age >= warn_ms && !*warned) {
        *warned = 1;
        return 1;
    }
    return 0;
}

static int stall_event(herd_negotiator_t *n, int type, int64_t slot, const char *name,
                       size_t name_len, char *message)
{
    herd_neg_event_t ev = {.type = type, .slot = slot, .status = HERD_ERR_STALLED,
                           .name_len = name_len};
    char *copy = malloc(name_len + 1);
    if (copy != NULL) {
        memcpy(copy, name, name_len);
        copy[name_len] = '\0';
    }
    ev.name = keep_message(n, copy);
    ev.message = keep_message(n, message);
    if (ev.name == NULL || ev.message == NULL)
        return HERD_ERR_NO_MEMORY;
    return push_event(n, ev);
}

int herd__negotiate_stall_scan(herd_negotiator_t *n, const uint64_t *const *rank_bits,
                               int64_t words, int64_t now_ms, int64_t warn_ms,
                               int64_t timeout_ms)
{
    clear_round(n);
    int rc = 0;
    for (int64_t s = 0; s < n->nslots && s < words * 64 && rc == 0; s++) {
        herd_slot_info_t *si = &n->slots[s];
        if (!si->in_use)
            continue;
        slot_have_t h = {.rank_bits = rank_bits, .slot = s};
        int count = 0;
        for (int r = 0; r < n->nranks; r++)
            count += slot_has(&h, r);
        if (count == 0 || count == n->nranks) {
            si->stall_since_ms = -1;
            si->stall_warned = 0;
            continue;
        }
        int act = stall_step(&si->stall_since_ms, &si->stall_warned, now_ms, warn_ms,
                             timeout_ms);
        if (act == 0)
            continue;
        int64_t age = now_ms - si->stall_since_ms;
        char *msg = stall_message(n->nranks, si->name, si->name_len, age, slot_has, &h,
                                  act == 2 ? "timed out (HERD_STALL_TIMEOUT_SECONDS)"
                                           : "is stalled");
        rc = stall_event(n, act == 2 ? HERD_EVENT_EXPIRED : HERD_EVENT_STALLED, s, si->name,
                         si->name_len, msg);
        if (act == 2) {
            si->stall_since_ms = -1;
            si->stall_warned = 0;
        }
    }
    herd_pending_name_t *p, *tmp;
    HASH_ITER(hh, n->pending, p, tmp) {
        if (rc != 0)
            break;
        int act = stall_step(&p->stall_since_ms, &p->stall_warned, now_ms, warn_ms, timeout_ms);
        if (act == 0)
            continue;
        int64_t age = now_ms - p->stall_since_ms;
        char *msg = stall_message(n->nranks, p->name, p->name_len, age, pending_has, p,
                                  act == 2 ? "timed out (HERD_STALL_TIMEOUT_SECONDS)"
                                           : "is stalled");
        rc = stall_event(n, act == 2 ? HERD_EVENT_ERROR : HERD_EVENT_STALLED, -1, p->name,
                         p->name_len, msg);
        if (act == 2) {
            HASH_DEL(n->pending, p);
            n->npending--;
            free_pending(p);
        }
    }
    return rc;
}
