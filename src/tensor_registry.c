/* tensor_registry.c - a uthash map under one mutex. Lookups of known names allocate nothing. */
#include "tensor_registry.h"

#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "request_queue.h"
#include "status.h"
#include "util/thread.h"

void herd__registry_init(herd_registry_t *r)
{
    herd__mutex_init(&r->lock);
    r->by_name = NULL;
    r->next_key = 0;
}

void herd__registry_destroy(herd_registry_t *r)
{
    herd_tensor_t *t, *tmp;
    HASH_ITER(hh, r->by_name, t, tmp) {
        HASH_DEL(r->by_name, t);
        free(t);
    }
    herd__mutex_destroy(&r->lock);
}

herd_tensor_t *herd__registry_find(herd_registry_t *r, const char *name, size_t len)
{
    herd_tensor_t *t = NULL;
    herd__mutex_lock(&r->lock);
    HASH_FIND(hh, r->by_name, name, len, t);
    herd__mutex_unlock(&r->lock);
    return t;
}

int herd__registry_declare(herd_registry_t *r, const char *name, size_t len, herd_tensor_t **out)
{
    herd__mutex_lock(&r->lock);
    herd_tensor_t *t = NULL;
    HASH_FIND(hh, r->by_name, name, len, t);
    if (t == NULL) {
        t = calloc(1, sizeof *t + len + 1);
        if (t == NULL) {
            herd__mutex_unlock(&r->lock);
            return herd__status_set(HERD_ERR_NO_MEMORY, "cannot declare tensor '%.*s'",
                                    (int)len, name);
        }
        memcpy(t->name, name, len);
        t->name_len = len;
        t->key = r->next_key++;
        atomic_init(&t->inflight, 0);
        t->slot = -1;
        t->pending = HERD_NO_INDEX;
        HASH_ADD_KEYPTR(hh, r->by_name, t->name, t->name_len, t);
    }
    herd__mutex_unlock(&r->lock);
    *out = t;
    return HERD_OK;
}
