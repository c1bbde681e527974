/* tensor_registry.h - tensor names to local keys. Entries live until the registry is destroyed,
 * so pointers to them stay valid for the coordinator and for requests in flight.
 *
 * An open-addressing table of (hash, entry) pairs, four to a cache line: a lookup of a known
 * name reads one line of the table and the entry itself (a chained hash read every entry on
 * the chain, each a cache miss, and was the largest per-tensor cost with 10,000 names).
 *
 * Lock order: registry->lock is a leaf.
 */
#ifndef HERD_TENSOR_REGISTRY_H
#define HERD_TENSOR_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct herd_tensor {
    int64_t key;         /* declaration index on this rank: the priority this rank proposes */
    atomic_int inflight; /* 1 from submit until completion: one op per name at a time */
    /* under the coordinator's progress lock: */
    int64_t slot;          /* negotiated cache slot, -1 when not cached */
    uint32_t pending;      /* handle index of the op being negotiated, HERD_NO_INDEX if none */
    int announced_by_bit;  /* the pending op was announced through the ready bit-vector */
    size_t name_len;
    char name[];
} herd_tensor_t;

typedef struct herd_registry_slot {
    uint64_t hash;
    herd_tensor_t *tensor; /* NULL: empty */
} herd_registry_slot_t;

typedef struct herd_registry {
    pthread_mutex_t lock;
    herd_registry_slot_t *slots; /* guarded by lock; a power of two of them, at most half full */
    size_t capacity;             /* guarded by lock */
    int64_t next_key;            /* guarded by lock; also the number of entries */
} herd_registry_t;

/* No allocation: the table comes with the first name. */
void herd__registry_init(herd_registry_t *r);
void herd__registry_destroy(herd_registry_t *r);

/* Finds `name` or adds it with the next key. HERD_ERR_NO_MEMORY if it cannot be added. */
int herd__registry_declare(herd_registry_t *r, const char *name, size_t len, herd_tensor_t **out);

/* Finds `name`; NULL if never declared. */
herd_tensor_t *herd__registry_find(herd_registry_t *r, const char *name, size_t len);

#endif
