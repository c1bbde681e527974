/* tensor_registry.c - see tensor_registry.h. Lookups of known names allocate nothing. */
#include "tensor_registry.h"

#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "request_queue.h"
#include "status.h"
#include "util/thread.h"

enum { FIRST_CAPACITY = 256 };

void herd__registry_init(herd_registry_t *r)
{
    herd__mutex_init(&r->lock);
    r->slots = NULL;
    r->capacity = 0;
    r->next_key = 0;
}

void herd__registry_destroy(herd_registry_t *r)
{
    for (size_t i = 0; i < r->capacity; i++)
        free(r->slots[i].tensor);
    free(r->slots);
    r->slots = NULL;
    r->capacity = 0;
    herd__mutex_destroy(&r->lock);
}

/* Eight bytes at a time, multiply and fold (names are not adversarial input). */
static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = UINT64_C(0x9E3779B97F4A7C15) ^ n;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * UINT64_C(0xFF51AFD7ED558CCD);
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * UINT64_C(0xC4CEB9FE1A85EC53);
    return h ^ (h >> 32);
}

/* The slot holding `name`, or the empty slot where it would go. Caller holds the lock; the
 * table exists and has an empty slot. */
static herd_registry_slot_t *probe(const herd_registry_t *r, uint64_t h, const char *name,
                                   size_t len)
{
    size_t mask = r->capacity - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        herd_registry_slot_t *s = &r->slots[i];
        if (s->tensor == NULL)
            return s;
        if (s->hash == h && s->tensor->name_len == len && memcmp(s->tensor->name, name, len) == 0)
            return s;
    }
}

/* Doubles the table (or makes the first one). Caller holds the lock. */
static int grow(herd_registry_t *r)
{
    size_t cap = r->capacity ? r->capacity * 2 : FIRST_CAPACITY;
    herd_registry_slot_t *old = r->slots;
    size_t old_cap = r->capacity;
    r->slots = calloc(cap, sizeof *r->slots);
    if (r->slots == NULL) {
        r->slots = old;
        return HERD_ERR_NO_MEMORY;
    }
    r->capacity = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].tensor != NULL)
            *probe(r, old[i].hash, old[i].tensor->name, old[i].tensor->name_len) = old[i];
    }
    free(old);
    return HERD_OK;
}

herd_tensor_t *herd__registry_find(herd_registry_t *r, const char *name, size_t len)
{
    uint64_t h = name_hash(name, len);
    herd_tensor_t *t = NULL;
    herd__mutex_lock(&r->lock);
    if (r->capacity > 0)
        t = probe(r, h, name, len)->tensor;
    herd__mutex_unlock(&r->lock);
    return t;
}

int herd__registry_declare(herd_registry_t *r, const char *name, size_t len, herd_tensor_t **out)
{
    uint64_t h = name_hash(name, len);
    herd__mutex_lock(&r->lock);
    herd_registry_slot_t *s = r->capacity > 0 ? probe(r, h, name, len) : NULL;
    if (s == NULL || s->tensor == NULL) {
        herd_tensor_t *t = calloc(1, sizeof *t + len + 1);
        /* At most half full, so probes stay short. */
        if (t == NULL || ((size_t)(r->next_key + 1) * 2 > r->capacity && grow(r) != HERD_OK)) {
            herd__mutex_unlock(&r->lock);
            free(t);
            return herd__status_set(HERD_ERR_NO_MEMORY, "cannot declare tensor '%.*s'",
                                    (int)len, name);
        }
        memcpy(t->name, name, len);
        t->name_len = len;
        t->key = r->next_key++;
        atomic_init(&t->inflight, 0);
        t->slot = -1;
        t->pending = HERD_NO_INDEX;
        s = probe(r, h, name, len);
        *s = (herd_registry_slot_t){.hash = h, .tensor = t};
    }
    herd_tensor_t *t = s->tensor; /* before unlocking: another declare may move the table */
    herd__mutex_unlock(&r->lock);
    *out = t;
    return HERD_OK;
}
