/* tensor_registry.h - tensor names to local keys. Entries live until the registry is destroyed,
 * so pointers to them stay valid for the coordinator and for requests in flight.
 *
 * Lock order: registry->lock is a leaf.
 */
#ifndef HERD_TENSOR_REGISTRY_H
#define HERD_TENSOR_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

typedef struct herd_tensor {
    UT_hash_handle hh;   /* guarded by registry lock */
    int64_t key;         /* declaration index on this rank: the priority this rank proposes */
    atomic_int inflight; /* 1 from submit until completion: one op per name at a time */
    /* under the coordinator's progress lock: */
    int64_t slot;          /* negotiated cache slot, -1 when not cached */
    uint32_t pending;      /* handle index of the op being negotiated, HERD_NO_INDEX if none */
    int announced_by_bit;  /* the pending op was announced through the ready bit-vector */
    size_t name_len;
    char name[];
} herd_tensor_t;

typedef struct herd_registry {
    pthread_mutex_t lock;
    herd_tensor_t *by_name; /* guarded by lock */
    int64_t next_key;       /* guarded by lock */
} herd_registry_t;

void herd__registry_init(herd_registry_t *r);
void herd__registry_destroy(herd_registry_t *r);

/* Finds `name` or adds it with the next key. HERD_ERR_NO_MEMORY if it cannot be added. */
int herd__registry_declare(herd_registry_t *r, const char *name, size_t len, herd_tensor_t **out);

/* Finds `name`; NULL if never declared. */
herd_tensor_t *herd__registry_find(herd_registry_t *r, const char *name, size_t len);

#endif
