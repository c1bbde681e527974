/* fusion.h - which ready tensors travel together (pure planning), and packing them.
 *
 * Tensors that share (kind, dtype, op, root, device class) are packed, in priority order, into
 * groups of at most `threshold` bytes, each reduced with one collective over the fusion buffer.
 * A tensor of `threshold` bytes or more goes alone and is reduced where it lies, with no copy.
 */
#ifndef HERD_FUSION_H
#define HERD_FUSION_H

#include <stddef.h>
#include <stdint.h>

typedef struct herd_fusion_item {
    int kind, dtype, op, root, device_class; /* device_class: 0 host, 1 GPU */
    int solo;      /* its kind never fuses (op_kind.h): a group of its own */
    int64_t bytes; /* must be the same number on every rank */
} herd_fusion_item_t;

typedef struct herd_fusion_group {
    int64_t first; /* position in the plan's order[] */
    int64_t count; /* tensors in the group */
    int64_t bytes; /* their total size */
    int fused;     /* 1: packed into the fusion buffer; 0: one tensor reduced where it lies */
} herd_fusion_group_t;

/* Scratch a plan needs per item; the caller allocates it once for its largest round. */
typedef struct herd_fusion_scratch {
    int64_t *next; /* n entries */
} herd_fusion_scratch_t;

/* Plans groups over items[0..n) given in priority order. Writes item positions, group by group,
 * to order[0..n) and the groups to groups[0..*ngroups); both arrays hold n entries. Groups are
 * emitted in the order they close: the same inputs give the same plan on every rank. Allocates
 * nothing. */
void herd__fusion_plan(const herd_fusion_item_t *items, int64_t n, int64_t threshold,
                       herd_fusion_scratch_t *scratch, int64_t *order,
                       herd_fusion_group_t *groups, int64_t *ngroups);

/* A position inside a group's bytes laid end to end: member index and offset within it. */
typedef struct herd_fusion_cursor {
    int64_t member;
    int64_t offset;
} herd_fusion_cursor_t;

/* How bytes move: memcpy for host memory, an asynchronous device copy for GPU memory. */
typedef void (*herd_copy_fn)(void *ctx, void *dst, const void *src, size_t n);

/* Copies the next `n` bytes of the members (srcs[i], bytes[i] each, laid end to end) from *cur
 * into dst with copy(ctx, ...), and advances *cur. Lets a group travel in cache-sized pieces. */
void herd__fusion_pack_range(void *dst, const void *const *srcs, const int64_t *bytes,
                             int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                             herd_copy_fn copy, void *ctx);

/* The reverse: copies `n` bytes from src out to the members at *cur, and advances *cur. */
void herd__fusion_unpack_range(const void *src, void *const *dsts, const int64_t *bytes,
                               int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                               herd_copy_fn copy, void *ctx);

/* Per-member scale factors for packing (prescale) or unpacking (postscale) host memory: member
 * i's bytes are multiplied by factors[i] on the way (herd__dtype_scale_copy) when it is not 1.
 * NULL factors: plain copies. */
typedef struct herd_fusion_scaling {
    const double *factors;
    int dtype;
} herd_fusion_scaling_t;

void herd__fusion_pack_range_scaled(void *dst, const void *const *srcs, const int64_t *bytes,
                                    int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                                    const herd_fusion_scaling_t *scaling);
void herd__fusion_unpack_range_scaled(const void *src, void *const *dsts, const int64_t *bytes,
                                      int64_t count, herd_fusion_cursor_t *cur, int64_t n,
                                      const herd_fusion_scaling_t *scaling);

/* Copies srcs[i] (bytes[i] each) one after another into dst. */
void herd__fusion_pack(void *dst, const void *const *srcs, const int64_t *bytes, int64_t n);

/* Copies consecutive pieces of src (bytes[i] each) out to dsts[i]. */
void herd__fusion_unpack(const void *src, void *const *dsts, const int64_t *bytes, int64_t n);

#endif
