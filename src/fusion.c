/* fusion.c - see fusion.h. The planner keeps one open group per attribute class, linked through
 * scratch->next so that members stay in priority order without moving anything. */
#include "fusion.h"

#include <string.h>

#include "dtype.h"

enum { MAX_OPEN_GROUPS = 32 };

typedef struct open_group {
    const herd_fusion_item_t *proto;
    int64_t head, tail, count, bytes;
} open_group_t;

static int same_class(const herd_fusion_item_t *a, const herd_fusion_item_t *b)
{
    return a->kind == b->kind && a->dtype == b->dtype && a->op == b->op && a->root == b->root &&
           a->device_class == b->device_class;
}

typedef struct plan_out {
    int64_t *order;
    herd_fusion_group_t *groups;
    int64_t norder, ngroups;
    const int64_t *next;
} plan_out_t;

static void emit(plan_out_t *out, const open_group_t *g, int fused)
{
    herd_fusion_group_t *grp = &out->groups[out->ngroups++];
    grp->first = out->norder;
    grp->count = g->count;
    grp->bytes = g->bytes;
    grp->fused = fused && g->count > 1;
    for (int64_t i = g->head; i >= 0; i = out->next[i])
        out->order[out->norder++] = i;
}

void herd__fusion_plan(const herd_fusion_item_t *items, int64_t n, int64_t threshold,
                       herd_fusion_scratch_t *scratch, int64_t *order,
                       herd_fusion_group_t *groups, int64_t *ngroups)
{
    open_group_t open[MAX_OPEN_GROUPS];
    int nopen = 0;
    int64_t *next = scratch->next;
    plan_out_t out = {.order = order, .groups = groups, .next = next};

    for (int64_t i = 0; i < n; i++) {
        const herd_fusion_item_t *it = &items[i];
        next[i] = -1;
        if (it->solo || it->bytes >= threshold || it->bytes == 0) {
            open_group_t solo = {.proto = it, .head = i, .tail = i, .count = 1,
                                 .bytes = it->bytes};
            emit(&out, &solo, 0);
            continue;
        }
        int g = 0;
        while (g < nopen && !same_class(open[g].proto, it))
            g++;
        if (g < nopen && open[g].bytes + it->bytes > threshold) {
            emit(&out, &open[g], 1);
            open[g] = open[--nopen]; /* order of open groups is irrelevant until the end */
            g = nopen;
        }
        if (g == nopen && nopen == MAX_OPEN_GROUPS) {
            emit(&out, &open[0], 1);
            memmove(&open[0], &open[1], sizeof open[0] * (size_t)(--nopen));
            g = nopen;
        }
        if (g == nopen) {
            open[nopen++] = (open_group_t){.proto = it, .head = i, .tail = i, .count = 1,
                                           .bytes = it->bytes};
        } else {
            next[open[g].tail] = i;
            open[g].tail = i;
            open[g].count++;
            open[g].bytes += it->bytes;
        }
    }
    /* Flush what is left in the order the groups were opened (their first member's priority). */
    while (nopen > 0) {
        int first = 0;
        for (int g = 1; g < nopen; g++)
            if (open[g].head < open[first].head)
                first = g;
        emit(&out, &open[first], 1);
        open[first] = open[--nopen];
    }
    *ngroups = out.ngroups;
}

/* Walks the next `n` bytes of the members (bytes[i] each, laid end to end) from *cur, alongside
 * the contiguous buffer `flat`: calls step(ctx, member, offset in it, flat position, length)
 * once per member touched, and advances *cur. The one loop behind every pack and unpack. */
typedef void (*walk_step_fn)(void *ctx, int64_t member, int64_t offset, char *flat, size_t n);

static void walk(char *flat, const int64_t *bytes, int64_t count, herd_fusion_cursor_t *cur,
                 int64_t n, walk_step_fn step, void *ctx)
{
    while (n > 0 && cur->member < count) {
        int64_t take = bytes[cur->member] - cur->offset;
        if (take > n)
            take = n;
        step(ctx, cur->member, cur->offset, flat, (size_t)take);
        flat += take;
        n -= take;
        cur->offset += take;
        if (cur->offset == bytes[cur->member]) {
            cur->member++;
            cur->offset = 0;
        }
    }
}

typedef struct copy_walk {
    const void *const *srcs; /* pack */
    void *const *dsts;       /* unpack */
    herd_copy_fn copy;
    void *copy_ctx;
    const herd_fusion_scaling_t *scaling; /* NULL: copy */
} copy_walk_t;

/* A member's factor, or 1 when the walk does not scale. */
static double factor_of(const copy_walk_t *w, int64_t member)
{
    if (w->scaling == NULL || w->scaling->factors == NULL)
        return 1.0;
    return w->scaling->factors[member];
}

/* Pieces always split members at element boundaries: every size involved is a multiple of the
 * element, so a scaled copy sees whole elements. */
static void move(const copy_walk_t *w, int64_t member, char *dst, const char *src, size_t n)
{
    double f = factor_of(w, member);
    if (f != 1.0)
        herd__dtype_scale_copy(w->scaling->dtype, dst, src,
                               n / herd__dtype_size(w->scaling->dtype), f);
    else if (w->copy != NULL)
        w->copy(w->copy_ctx, dst, src, n);
    else
        memcpy(dst, src, n);
}

static void pack_step(void *ctx, int64_t member, int64_t offset, char *flat, size_t n)
{
    const copy_walk_t *w = ctx;
    move(w, member, flat, (const char *)w->srcs[member] + offset, n);
}

static void unpack_step(void *ctx, int64_t member, int64_t offset, char *flat, size_t n)
{
    const copy_walk_t *w = ctx;
    move(w, member, (char *)w->dsts[member] + offset, flat, n);
}

void herd__fusion_pack_range(void *dst, const void *const *srcs, const int64_t *bytes,
                             int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                             herd_copy_fn copy, void *ctx)
{
    copy_walk_t w = {.srcs = srcs, .copy = copy, .copy_ctx = ctx};
    walk(dst, bytes, count, cur, n, pack_step, &w);
}

void herd__fusion_unpack_range(const void *src, void *const *dsts, const int64_t *bytes,
                               int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                               herd_copy_fn copy, void *ctx)
{
    copy_walk_t w = {.dsts = dsts, .copy = copy, .copy_ctx = ctx};
    walk((char *)src, bytes, count, cur, n, unpack_step, &w);
}

void herd__fusion_pack_range_scaled(void *dst, const void *const *srcs, const int64_t *bytes,
                                    int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                                    const herd_fusion_scaling_t *scaling)
{
    copy_walk_t w = {.srcs = srcs, .scaling = scaling};
    walk(dst, bytes, count, cur, n, pack_step, &w);
}

void herd__fusion_unpack_range_scaled(const void *src, void *const *dsts, const int64_t *bytes,
                                      int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                                      const herd_fusion_scaling_t *scaling)
{
    copy_walk_t w = {.dsts = dsts, .scaling = scaling};
    walk((char *)src, bytes, count, cur, n, unpack_step, &w);
}

static void host_copy(void *ctx, void *dst, const void *src, size_t n)
{
    (void)ctx;
    memcpy(dst, src, n);
}

void herd__fusion_pack(void *dst, const void *const *srcs, const int64_t *bytes, int64_t n)
{
    herd_fusion_cursor_t cur = {0, 0};
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += bytes[i];
    herd__fusion_pack_range(dst, srcs, bytes, n, &cur, total, host_copy, NULL);
}

void herd__fusion_unpack(const void *src, void *const *dsts, const int64_t *bytes, int64_t n)
{
    herd_fusion_cursor_t cur = {0, 0};
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += bytes[i];
    herd__fusion_unpack_range(src, dsts, bytes, n, &cur, total, host_copy, NULL);
}
