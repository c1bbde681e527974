/* negotiate.h - which tensors are ready on every rank, in one order every rank computes alike.
 *
 * Every rank runs the same negotiator over the same inputs (the AND of all ranks' ready bits and
 * every rank's name requests, gathered), so every rank reaches the same decisions without a
 * leader: the same cache slots, the same mismatches, the same execution order. Pure: no MPI, no
 * threads; the coordinator feeds it and acts on what it says.
 *
 * First sight of a name travels as a name request (wire record below). When every rank has asked
 * for a name, its attributes are validated; if they agree, the name gets a cache slot, and from
 * then on a submission of it is one bit in the ready vector. A rank that submits a cached name
 * with different attributes asks by name again, naming the slot, which every rank then evicts.
 */
#ifndef HERD_NEGOTIATE_H
#define HERD_NEGOTIATE_H

#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

typedef struct herd_attrs {
    int64_t count;  /* this rank's; differs per rank for kinds whose count varies */
    int64_t row;    /* elements per row (op_kind.h has_row), else 1 */
    int32_t kind;   /* HERD_KIND_* */
    int32_t dtype;
    int32_t op;     /* HERD_SUM for kinds that do not reduce */
    int32_t root;   /* -1 for kinds without a root */
    int32_t device; /* HERD_DEVICE_CPU or a CUDA ordinal */
} herd_attrs_t;

/* One name request as it travels between ranks. */
enum { HERD_WIRE_HEADER_BYTES = 48 };
typedef struct herd_wire_request {
    herd_attrs_t attrs;
    int64_t priority;   /* the sender's declaration key */
    int64_t evict_slot; /* the slot the sender had for this name, or -1 */
    const char *name;   /* points into the decoded buffer; not NUL-terminated */
    size_t name_len;
} herd_wire_request_t;

/* Appends one record to buf[*used..cap). Returns 0, or -1 when it does not fit. */
int herd__wire_encode(char *buf, size_t cap, size_t *used, const herd_wire_request_t *req);

/* Reads the record at buf[*offset..len). Returns 1 and advances *offset, 0 at the end, -1 for a
 * malformed record (bounds, lengths and every enum are checked; nothing is read out of range). */
int herd__wire_decode(const char *buf, size_t len, size_t *offset, herd_wire_request_t *out);

/* 1 if two ranks' attributes describe the same operation: what op_kind.h says must agree does.
 * Devices agree when both are host or both are GPUs: each rank may drive its own GPU ordinal. */
int herd__attrs_agree(const herd_attrs_t *a, const herd_attrs_t *b);

/* "allreduce of 10 float32 (sum)", "broadcast of 3 int8 from root 1". */
void herd__attrs_describe(const herd_attrs_t *a, char *out, size_t cap);

typedef struct herd_slot_info {
    herd_attrs_t attrs;
    int64_t priority; /* rank 0's declaration key: the same number on every rank */
    int64_t stall_since_ms; /* rank 0's clock when a stall check first saw it partly ready */
    int stall_warned;
    void *local;      /* this rank's tensor entry, set by the coordinator */
    int in_use;
    size_t name_len;
    char *name;
} herd_slot_info_t;

typedef struct herd_pending_name herd_pending_name_t;

enum {
    HERD_EVENT_NEW_SLOT = 0, /* a name got a cache slot */
    HERD_EVENT_EVICTED = 1,  /* a cache slot was given up */
    HERD_EVENT_ERROR = 2,    /* a name failed (mismatch, stall timeout): its askers' ops fail */
    HERD_EVENT_STALLED = 3,  /* a tensor waits on missing ranks: warn (message) */
    HERD_EVENT_EXPIRED = 4,  /* a cached slot's ops timed out on the ranks that submitted them */
    HERD_EVENT_JOINED = 5    /* every rank has joined: joins complete; slot = the last rank */
};

typedef struct herd_neg_event {
    int type;
    int64_t slot;     /* NEW_SLOT, EVICTED */
    int status;       /* ERROR: e.g. HERD_ERR_MISMATCH */
    const char *name; /* valid until the next round */
    size_t name_len;
    const char *message; /* ERROR: valid until the next round */
} herd_neg_event_t;

typedef struct herd_negotiator {
    int nranks;
    herd_slot_info_t *slots;
    int64_t nslots, slots_cap;
    int64_t *free_slots; /* evicted slots, reused last-in first-out */
    int64_t nfree;
    herd_pending_name_t *pending; /* names some ranks asked for, by name */
    int64_t npending;
    /* Results of the last round. */
    int64_t *ready; /* slots to execute now, in execution order */
    int64_t nready, ready_cap;
    herd_neg_event_t *events;
    int64_t nevents, events_cap;
    char **messages; /* owned texts behind events of the last round */
    int64_t nmessages, messages_cap;
    int64_t malformed; /* records dropped as malformed, ever */
    /* Join (herd_join): ranks that have joined and wait for the others. A joined rank takes part
     * in every op: names complete when every rank that has not joined asked for them. */
    uint8_t *joined; /* per rank */
    int njoined;
    int last_joined;
    /* Optional: told of every name request as it is taken in (the timeline's ready marks). */
    void (*observe)(void *ctx, int rank, const char *name, size_t name_len);
    void *observe_ctx;
} herd_negotiator_t;

/* Returns 0, or HERD_ERR_NO_MEMORY. */
int herd__negotiate_init(herd_negotiator_t *n, int nranks);
void herd__negotiate_destroy(herd_negotiator_t *n);

/* One round. `and_bits` holds ceil(nslots / 64) words: bit s set when every rank has slot s
 * ready. blobs[r] / blob_lens[r] are rank r's encoded name requests (NULL / 0 for none).
 * Afterwards n->ready lists the slots to execute, sorted by (priority, slot), and n->events the
 * slots made and evicted and the names that failed. Returns 0, or HERD_ERR_NO_MEMORY. */
int herd__negotiate_round(herd_negotiator_t *n, const uint64_t *and_bits, int64_t and_words,
                          const char *const *blobs, const size_t *blob_lens);

/* Number of 64-bit words a ready vector needs now. */
static inline int64_t herd__negotiate_words(const herd_negotiator_t *n)
{
    return (n->nslots + 63) / 64;
}

/* Fails every pending name with `status`: names listed as ERROR events. Used at shutdown. */
int herd__negotiate_fail_pending(herd_negotiator_t *n, int status, const char *why);

/* The stall inspector's step, run on every rank over the same inputs: rank_bits[r] is rank r's
 * ready vector (words each) and now_ms rank 0's clock. A tensor some ranks have submitted and
 * others have not is stalled from the first check that sees it so; once stalled for warn_ms it
 * yields one STALLED event (0 disables), once stalled for timeout_ms (0 disables) an ERROR
 * event with HERD_ERR_STALLED (a name still being negotiated: dropped) or an EXPIRED event (a
 * cached slot). Messages name the tensor, how long, and the ranks that have and have not
 * submitted it. Replaces the events of the round. */
int herd__negotiate_stall_scan(herd_negotiator_t *n, const uint64_t *const *rank_bits,
                               int64_t words, int64_t now_ms, int64_t warn_ms,
                               int64_t timeout_ms);

#endif
