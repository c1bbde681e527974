/* test_registry.c - tensor names to keys: increasing keys in declaration order, one entry per
 * name (byte-exact, length-delimited), stable pointers, and concurrent declaration. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "herd.h"
#include "request_queue.h"
#include "tensor_registry.h"
#include "unit.h"

static herd_tensor_t *declare(herd_registry_t *r, const char *name)
{
    herd_tensor_t *t = NULL;
    UNIT_EQ_INT_FATAL(herd__registry_declare(r, name, strlen(name), &t), HERD_OK);
    UNIT_EQ_INT_FATAL(t != NULL, 1);
    return t;
}

static void test_keys_increase_in_declaration_order(void)
{
    herd_registry_t r;
    herd__registry_init(&r);
    static const char *const names[] = {"fc.weight", "fc.bias", "conv1.weight", "emb"};
    herd_tensor_t *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = declare(&r, names[i]);
        UNIT_EQ_INT(t[i]->key, i);
        UNIT_EQ_INT(t[i]->name_len, strlen(names[i]));
        UNIT_EQ_STR(t[i]->name, names[i]); /* stored NUL-terminated */
        /* Coordinator fields start empty. */
        UNIT_EQ_INT(t[i]->slot, -1);
        UNIT_EQ_INT(t[i]->pending, HERD_NO_INDEX);
        UNIT_EQ_INT(t[i]->announced_by_bit, 0);
        UNIT_EQ_INT(atomic_load(&t[i]->inflight), 0);
    }
    UNIT_EQ_INT(r.next_key, 4);
    herd__registry_destroy(&r);
}

static void test_same_name_same_entry(void)
{
    herd_registry_t r;
    herd__registry_init(&r);
    herd_tensor_t *a = declare(&r, "a");
    herd_tensor_t *b = declare(&r, "b");
    atomic_store(&a->inflight, 1);
    a->slot = 9; /* state on the entry survives a re-declaration */
    herd_tensor_t *a2 = declare(&r, "a");
    UNIT_EQ_INT(a2 == a, 1);
    UNIT_EQ_INT(a2->key, 0);
    UNIT_EQ_INT(a2->slot, 9);
    UNIT_EQ_INT(atomic_load(&a2->inflight), 1);
    UNIT_EQ_INT(declare(&r, "b") == b, 1);
    /* Re-declaring does not use up a key. */
    UNIT_EQ_INT(declare(&r, "c")->key, 2);
    herd__registry_destroy(&r);
}

static void test_find(void)
{
    herd_registry_t r;
    herd__registry_init(&r);
    UNIT_EQ_INT(herd__registry_find(&r, "x", 1) == NULL, 1);
    herd_tensor_t *x = declare(&r, "x");
    UNIT_EQ_INT(herd__registry_find(&r, "x", 1) == x, 1);
    UNIT_EQ_INT(herd__registry_find(&r, "y", 1) == NULL, 1);
    UNIT_EQ_INT(herd__registry_find(&r, "xx", 2) == NULL, 1);
    UNIT_EQ_INT(r.next_key, 1); /* find never adds */
    herd__registry_destroy(&r);
}

static void test_prefixes_are_distinct_names(void)
{
    herd_registry_t r;
    herd__registry_init(&r);
    herd_tensor_t *a = declare(&r, "a");
    herd_tensor_t *ab = declare(&r, "ab");
    herd_tensor_t *abc = declare(&r, "abc");
    herd_tensor_t *b = declare(&r, "b");
    UNIT_EQ_INT(a->key, 0);
    UNIT_EQ_INT(ab->key, 1);
    UNIT_EQ_INT(abc->key, 2);
    UNIT_EQ_INT(b->key, 3);
    UNIT_EQ_INT(herd__registry_find(&r, "ab", 2) == ab, 1);
    UNIT_EQ_INT(herd__registry_find(&r, "abc", 3) == abc, 1);
    UNIT_EQ_INT(herd__registry_find(&r, "a", 1) == a, 1);
    /* Names are length-delimited: a longer buffer with the same first bytes is a prefix. */
    herd_tensor_t *t = NULL;
    UNIT_EQ_INT(herd__registry_declare(&r, "abcdef", 2, &t), HERD_OK);
    UNIT_EQ_INT(t == ab, 1);
    UNIT_EQ_INT(herd__registry_find(&r, "abz", 1) == a, 1);
    herd__registry_destroy(&r);
}

static void test_names_are_byte_exact(void)
{
    herd_registry_t r;
    herd__registry_init(&r);
    herd_tensor_t *lower = declare(&r, "layer.weight");
    herd_tensor_t *upper = declare(&r, "Layer.weight");
    herd_tensor_t *space = declare(&r, "layer.weight ");
    UNIT_EQ_INT(lower != upper && lower != space && upper != space, 1);
    /* A 255-byte name, the longest herd accepts, is kept whole. */
    char longest[HERD_MAX_NAME_LEN + 1];
    memset(longest, 'n', HERD_MAX_NAME_LEN);
    longest[HERD_MAX_NAME_LEN] = '\0';
    herd_tensor_t *l = declare(&r, longest);
    UNIT_EQ_INT(l->name_len, HERD_MAX_NAME_LEN);
    UNIT_EQ_STR(l->name, longest);
    longest[HERD_MAX_NAME_LEN - 1] = 'm';
    UNIT_EQ_INT(herd__registry_find(&r, longest, HERD_MAX_NAME_LEN) == NULL, 1);
    /* Names of whole 8-byte words that differ only in their last byte (the hash reads words). */
    herd_tensor_t *w1 = declare(&r, "abcdefgh12345678");
    herd_tensor_t *w2 = declare(&r, "abcdefgh12345679");
    herd_tensor_t *w3 = declare(&r, "abcdefgh");
    UNIT_EQ_INT(w1 != w2 && w1 != w3 && w2 != w3, 1);
    UNIT_EQ_INT(herd__registry_find(&r, "abcdefgh12345679", 16) == w2, 1);
    UNIT_EQ_INT(herd__registry_find(&r, "abcdefgh", 8) == w3, 1);
    herd__registry_destroy(&r);
}

static void test_pointers_stay_valid_as_the_table_grows(void)
{
    herd_registry_t r;
    herd__registry_init(&r);
    herd_tensor_t *first = declare(&r, "first");
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "t%d", i);
        UNIT_EQ_INT(declare(&r, name)->key, i + 1);
    }
    UNIT_EQ_INT(herd__registry_find(&r, "first", 5) == first, 1);
    UNIT_EQ_STR(first->name, "first");
    UNIT_EQ_INT(first->key, 0);
    UNIT_EQ_INT(herd__registry_find(&r, "t4999", 5)->key, 5000);
    /* Every name still found after the table moved (several times), under its own key. */
    int found = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "t%d", i);
        herd_tensor_t *t = herd__registry_find(&r, name, strlen(name));
        found += t != NULL && t->key == i + 1;
    }
    UNIT_EQ_INT(found, 5000);
    herd__registry_destroy(&r);
}

/* Threads declaring overlapping names in different orders: one entry per name, and the keys are
 * exactly 0..N-1 (none lost, none twice). */
enum { DECL_THREADS = 4, DECL_NAMES = 200 };

typedef struct decl_ctx {
    herd_registry_t *r;
    int id;
    herd_tensor_t *got[DECL_NAMES];
    int failures;
} decl_ctx_t;

static void *declare_all(void *arg)
{
    decl_ctx_t *c = arg;
    for (int k = 0; k < DECL_NAMES; k++) {
        int i = c->id % 2 ? DECL_NAMES - 1 - k : (k * 7 + c->id) % DECL_NAMES;
        char name[32];
        snprintf(name, sizeof name, "param.%d", i);
        if (herd__registry_declare(c->r, name, strlen(name), &c->got[i]) != HERD_OK)
            c->failures++;
    }
    return NULL;
}

static void test_concurrent_declarations(void)
{
    herd_registry_t r;
    herd__registry_init(&r);
    static decl_ctx_t c[DECL_THREADS];
    pthread_t th[DECL_THREADS];
    for (int i = 0; i < DECL_THREADS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].r = &r;
        c[i].id = i;
        UNIT_EQ_INT_FATAL(pthread_create(&th[i], NULL, declare_all, &c[i]), 0);
    }
    for (int i = 0; i < DECL_THREADS; i++)
        pthread_join(th[i], NULL);
    int key_seen[DECL_NAMES] = {0};
    int disagreements = 0;
    for (int n = 0; n < DECL_NAMES; n++) {
        for (int i = 1; i < DECL_THREADS; i++)
            if (c[i].got[n] != c[0].got[n])
                disagreements++;
        int64_t key = c[0].got[n] ? c[0].got[n]->key : -1;
        if (key >= 0 && key < DECL_NAMES)
            key_seen[key]++;
    }
    UNIT_EQ_INT(disagreements, 0);
    for (int i = 0; i < DECL_THREADS; i++)
        UNIT_EQ_INT(c[i].failures, 0);
    int keys_once = 0;
    for (int k = 0; k < DECL_NAMES; k++)
        keys_once += key_seen[k] == 1;
    UNIT_EQ_INT(keys_once, DECL_NAMES);
    UNIT_EQ_INT(r.next_key, DECL_NAMES);
    herd__registry_destroy(&r);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"keys_increase_in_declaration_order", test_keys_increase_in_declaration_order},
        {"same_name_same_entry", test_same_name_same_entry},
        {"find", test_find},
        {"prefixes_are_distinct_names", test_prefixes_are_distinct_names},
        {"names_are_byte_exact", test_names_are_byte_exact},
        {"pointers_stay_valid_as_the_table_grows", test_pointers_stay_valid_as_the_table_grows},
        {"concurrent_declarations", test_concurrent_declarations},
        CU_TEST_INFO_NULL,
    };
    return unit_run("registry", tests);
}
