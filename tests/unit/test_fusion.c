/* test_fusion.c - the fusion planner (exact plans on small inputs, invariants on random ones)
 * and packing tensors into and out of the fusion buffer. */
#include <stdio.h>
#include <string.h>

#include "dtype.h"
#include "fusion.h"
#include "herd.h"
#include "request_queue.h"
#include "unit.h"

enum { MAXN = 512 };

typedef struct plan {
    int64_t order[MAXN];
    herd_fusion_group_t groups[MAXN];
    int64_t ngroups;
} plan_t;

static herd_fusion_item_t item(int64_t bytes)
{
    return (herd_fusion_item_t){.kind = HERD_KIND_ALLREDUCE,
                                .dtype = HERD_FLOAT32,
                                .op = HERD_SUM,
                                .root = -1,
                                .device_class = 0,
                                .bytes = bytes};
}

static void make_plan(const herd_fusion_item_t *items, int64_t n, int64_t threshold, plan_t *p)
{
    static int64_t next[MAXN];
    herd_fusion_scratch_t scratch = {.next = next};
    for (int i = 0; i < MAXN; i++) {
        p->order[i] = -7;
        p->groups[i] = (herd_fusion_group_t){-7, -7, -7, -7};
        next[i] = -7;
    }
    p->ngroups = -7;
    herd__fusion_plan(items, n, threshold, &scratch, p->order, p->groups, &p->ngroups);
}

/* "0,1:80F 2:40": each group's members (positions in items[]), total bytes, F when fused. */
static const char *plan_str(const plan_t *p, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int64_t g = 0; g < p->ngroups && used < cap; g++) {
        const herd_fusion_group_t *grp = &p->groups[g];
        used += (size_t)snprintf(buf + used, cap - used, "%s", g ? " " : "");
        for (int64_t k = 0; k < grp->count && used < cap; k++) {
            int64_t pos = grp->first + k;
            used += (size_t)snprintf(buf + used, cap - used, "%s%lld", k ? "," : "",
                                     pos >= 0 && pos < MAXN ? (long long)p->order[pos] : -1LL);
        }
        if (used < cap)
            used += (size_t)snprintf(buf + used, cap - used, ":%lld%s", (long long)grp->bytes,
                                     grp->fused ? "F" : "");
    }
    return buf;
}

#define EXPECT_PLAN(items, n, threshold, want)                                                     \
    do {                                                                                           \
        plan_t plan_;                                                                              \
        char plan_buf_[4096];                                                                      \
        make_plan((items), (n), (threshold), &plan_);                                              \
        UNIT_EQ_STR(plan_str(&plan_, plan_buf_, sizeof plan_buf_), (want));                        \
    } while (0)

static int same_class(const herd_fusion_item_t *a, const herd_fusion_item_t *b)
{
    return a->kind == b->kind && a->dtype == b->dtype && a->op == b->op && a->root == b->root &&
           a->device_class == b->device_class;
}

/* Every invariant a plan must keep. Returns the number of violations; describes the first. */
static int check_plan(const herd_fusion_item_t *items, int64_t n, int64_t threshold,
                      const plan_t *p, char *why, size_t cap)
{
    int bad = 0;
#define VIOLATION(...)                                                                             \
    do {                                                                                           \
        if (bad++ == 0)                                                                            \
            snprintf(why, cap, __VA_ARGS__);                                                       \
    } while (0)
    static int seen[MAXN];
    memset(seen, 0, sizeof seen);
    if (p->ngroups < 0 || p->ngroups > n)
        VIOLATION("ngroups %lld for %lld items", (long long)p->ngroups, (long long)n);
    int64_t pos = 0;
    for (int64_t g = 0; g < p->ngroups && g < n; g++) {
        const herd_fusion_group_t *grp = &p->groups[g];
        if (grp->first != pos)
            VIOLATION("group %lld starts at %lld, expected %lld", (long long)g,
                      (long long)grp->first, (long long)pos);
        if (grp->count < 1 || pos + grp->count > n) {
            VIOLATION("group %lld has count %lld", (long long)g, (long long)grp->count);
            break;
        }
        int64_t bytes = 0;
        for (int64_t k = 0; k < grp->count; k++) {
            int64_t i = p->order[pos + k];
            if (i < 0 || i >= n) {
                VIOLATION("order[%lld] = %lld", (long long)(pos + k), (long long)i);
                continue;
            }
            seen[i]++;
            bytes += items[i].bytes;
            if (k > 0) {
                int64_t prev = p->order[pos + k - 1];
                if (prev >= 0 && prev < n && !same_class(&items[prev], &items[i]))
                    VIOLATION("group %lld mixes classes (items %lld and %lld)", (long long)g,
                              (long long)prev, (long long)i);
                if (prev >= i)
                    VIOLATION("group %lld out of input order (%lld before %lld)", (long long)g,
                              (long long)prev, (long long)i);
            }
            if (grp->count > 1 && (items[i].bytes == 0 || items[i].bytes >= threshold))
                VIOLATION("item %lld (%lld bytes) shares group %lld", (long long)i,
                          (long long)items[i].bytes, (long long)g);
        }
        if (bytes != grp->bytes)
            VIOLATION("group %lld says %lld bytes, members sum to %lld", (long long)g,
                      (long long)grp->bytes, (long long)bytes);
        if (grp->count > 1 && grp->bytes > threshold)
            VIOLATION("group %lld holds %lld bytes over threshold %lld", (long long)g,
                      (long long)grp->bytes, (long long)threshold);
        if (grp->fused != (grp->count > 1))
            VIOLATION("group %lld: fused=%d with count %lld", (long long)g, grp->fused,
                      (long long)grp->count);
        pos += grp->count;
    }
    if (pos != n)
        VIOLATION("groups cover %lld of %lld items", (long long)pos, (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (seen[i] != 1)
            VIOLATION("item %lld appears %d times", (long long)i, seen[i]);
#undef VIOLATION
    return bad;
}

static void expect_valid_plan(const herd_fusion_item_t *items, int64_t n, int64_t threshold)
{
    plan_t p;
    char why[512];
    make_plan(items, n, threshold, &p);
    int bad = check_plan(items, n, threshold, &p, why, sizeof why);
    if (bad)
        UNIT_FAIL("%d violations, first: %s", bad, why);
    UNIT_EQ_INT(bad, 0);
}

/* ---- exact plans -------------------------------------------------------------------------- */

static void test_packs_greedily_up_to_the_threshold(void)
{
    herd_fusion_item_t a[] = {item(40), item(40), item(40)};
    EXPECT_PLAN(a, 3, 100, "0,1:80F 2:40");
    herd_fusion_item_t b[] = {item(50), item(50), item(50)};
    EXPECT_PLAN(b, 3, 100, "0,1:100F 2:50"); /* exactly the threshold still fits */
    herd_fusion_item_t c[] = {item(30), item(30), item(30), item(30), item(30), item(30), item(30)};
    EXPECT_PLAN(c, 7, 100, "0,1,2:90F 3,4,5:90F 6:30");
    herd_fusion_item_t d[] = {item(99), item(1), item(1)};
    EXPECT_PLAN(d, 3, 100, "0,1:100F 2:1");
    herd_fusion_item_t one[] = {item(10)};
    EXPECT_PLAN(one, 1, 100, "0:10");
    EXPECT_PLAN(one, 0, 100, "");
}

static void test_large_tensors_go_alone_unfused(void)
{
    herd_fusion_item_t a[] = {item(30), item(100), item(30), item(250), item(30)};
    /* Large ones are emitted as met; the open group closes at the end. */
    EXPECT_PLAN(a, 5, 100, "1:100 3:250 0,2,4:90F");
    herd_fusion_item_t b[] = {item(101), item(100)};
    EXPECT_PLAN(b, 2, 100, "0:101 1:100");
}

static void test_zero_byte_tensors_go_alone(void)
{
    herd_fusion_item_t a[] = {item(0), item(10), item(0), item(10)};
    EXPECT_PLAN(a, 4, 100, "0:0 2:0 1,3:20F");
    herd_fusion_item_t b[] = {item(0), item(0)};
    EXPECT_PLAN(b, 2, 100, "0:0 1:0");
}

static void test_threshold_zero_makes_every_tensor_solo(void)
{
    herd_fusion_item_t a[] = {item(0), item(5), item(10), item(1)};
    EXPECT_PLAN(a, 4, 0, "0:0 1:5 2:10 3:1");
    EXPECT_PLAN(a, 4, 1, "0:0 1:5 2:10 3:1"); /* nothing is below 1 byte except empties */
}

static void test_classes_never_share_a_group(void)
{
    /* One variant per attribute: each must split the group. */
    herd_fusion_item_t variants[5];
    for (int v = 0; v < 5; v++)
        variants[v] = item(10);
    variants[0].kind = HERD_KIND_BROADCAST;
    variants[0].root = -1; /* only the kind differs */
    variants[1].dtype = HERD_FLOAT16;
    variants[2].op = HERD_MAX;
    variants[3].root = 0;
    variants[4].device_class = 1;
    for (int v = 0; v < 5; v++) {
        herd_fusion_item_t a[] = {item(10), variants[v], item(10), variants[v], item(10)};
        EXPECT_PLAN(a, 5, 100, "0,2,4:30F 1,3:20F");
    }
    /* Broadcasts from different roots are different classes. */
    herd_fusion_item_t r0 = item(10), r1 = item(10);
    r0.kind = r1.kind = HERD_KIND_BROADCAST;
    r0.root = 0;
    r1.root = 1;
    herd_fusion_item_t b[] = {r1, r0, r1, r0};
    EXPECT_PLAN(b, 4, 100, "0,2:20F 1,3:20F");
}

static void test_groups_close_per_class(void)
{
    /* A and B alternate, 60 bytes each, threshold 100: every A closes the previous A. */
    herd_fusion_item_t bb = item(60);
    bb.dtype = HERD_INT32;
    herd_fusion_item_t a[] = {item(60), bb, item(60), bb};
    EXPECT_PLAN(a, 4, 100, "0:60 1:60 2:60 3:60");
    /* Mixed sizes: the small B fills B's group while A's groups roll over. */
    herd_fusion_item_t small_b = item(20);
    small_b.dtype = HERD_INT32;
    herd_fusion_item_t c[] = {item(70), small_b, item(70), small_b, item(30), small_b};
    EXPECT_PLAN(c, 6, 100, "0:70 1,3,5:60F 2,4:100F");
}

static void test_more_classes_than_open_groups(void)
{
    /* 40 broadcast roots, twice over: more classes than the planner keeps open. */
    static herd_fusion_item_t a[80];
    for (int i = 0; i < 80; i++) {
        a[i] = item(10);
        a[i].kind = HERD_KIND_BROADCAST;
        a[i].root = i % 40;
    }
    expect_valid_plan(a, 80, 1000);
    /* With 20 classes everything stays open: each class is one group of two. */
    for (int i = 0; i < 40; i++)
        a[i].root = i % 20;
    plan_t p;
    make_plan(a, 40, 1000, &p);
    UNIT_EQ_INT(p.ngroups, 20);
    for (int g = 0; g < 20 && g < p.ngroups; g++) {
        UNIT_EQ_INT(p.groups[g].count, 2);
        UNIT_EQ_INT(p.order[p.groups[g].first], g);
        UNIT_EQ_INT(p.order[p.groups[g].first + 1], g + 20);
        UNIT_EQ_INT(p.groups[g].fused, 1);
    }
}

static void test_random_plans_keep_every_invariant(void)
{
    unit_rng_t rng = {7};
    static herd_fusion_item_t items[MAXN];
    int bad_plans = 0;
    char first_why[1024] = "";
    for (int trial = 0; trial < 2000; trial++) {
        int64_t n = (int64_t)unit_rng_below(&rng, trial < 100 ? 8 : MAXN + 1);
        int64_t threshold = (int64_t)unit_rng_below(&rng, 4) == 0
                                ? (int64_t)unit_rng_below(&rng, 3)
                                : 1 + (int64_t)unit_rng_below(&rng, 4096);
        int nclasses = 1 + (int)unit_rng_below(&rng, trial % 2 ? 4 : 48);
        for (int64_t i = 0; i < n; i++) {
            int c = (int)unit_rng_below(&rng, (uint64_t)nclasses);
            items[i] = (herd_fusion_item_t){.kind = c % 2,
                                            .dtype = (c / 2) % HERD_NUM_DTYPES,
                                            .op = (c / 16) % 3,
                                            .root = c % 2 ? c : -1,
                                            .device_class = (c / 7) % 2};
            uint64_t dice = unit_rng_below(&rng, 10);
            items[i].bytes = dice == 0   ? 0
                             : dice == 1 ? threshold + (int64_t)unit_rng_below(&rng, 100)
                                         : (int64_t)unit_rng_below(&rng, (uint64_t)threshold + 1);
        }
        plan_t p, q;
        make_plan(items, n, threshold, &p);
        char why[512];
        if (check_plan(items, n, threshold, &p, why, sizeof why) && bad_plans++ == 0)
            snprintf(first_why, sizeof first_why, "trial %d (n=%lld, threshold=%lld): %s", trial,
                     (long long)n, (long long)threshold, why);
        /* Pure: the same inputs plan the same way (every rank must agree). */
        make_plan(items, n, threshold, &q);
        int same =
            p.ngroups == q.ngroups && memcmp(p.order, q.order, sizeof p.order[0] * (size_t)n) == 0;
        for (int64_t g = 0; same && g < p.ngroups; g++)
            same = p.groups[g].first == q.groups[g].first &&
                   p.groups[g].count == q.groups[g].count &&
                   p.groups[g].bytes == q.groups[g].bytes && p.groups[g].fused == q.groups[g].fused;
        if (!same && bad_plans++ == 0)
            snprintf(first_why, sizeof first_why, "trial %d: two runs planned differently", trial);
    }
    if (bad_plans)
        UNIT_FAIL("%d bad plans, first: %s", bad_plans, first_why);
    UNIT_EQ_INT(bad_plans, 0);
}

/* ---- pack / unpack ----------------------------------------------------------------------- */

static void test_pack_unpack_round_trip(void)
{
    unsigned char a[3] = {1, 2, 3}, b[1] = {99}, c[8], d[5];
    for (int i = 0; i < 8; i++)
        c[i] = (unsigned char)(0x10 + i);
    for (int i = 0; i < 5; i++)
        d[i] = (unsigned char)(0xA0 + i);
    const void *srcs[] = {a, b, c, d};
    const int64_t bytes[] = {3, 0, 8, 5}; /* b contributes nothing */
    unsigned char buf[17];
    memset(buf, 0xEE, sizeof buf);
    herd__fusion_pack(buf, srcs, bytes, 4);
    const unsigned char want[17] = {1,    2,    3,    0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                                    0x16, 0x17, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xEE};
    UNIT_EQ_INT(memcmp(buf, want, sizeof want), 0);

    unsigned char oa[4], ob[2], oc[9], od[6];
    memset(oa, 0, sizeof oa);
    memset(ob, 0, sizeof ob);
    memset(oc, 0, sizeof oc);
    memset(od, 0, sizeof od);
    void *dsts[] = {oa, ob, oc, od};
    herd__fusion_unpack(buf, dsts, bytes, 4);
    UNIT_EQ_INT(memcmp(oa, a, 3), 0);
    UNIT_EQ_INT(oa[3], 0); /* nothing past each piece */
    UNIT_EQ_INT(ob[0], 0);
    UNIT_EQ_INT(memcmp(oc, c, 8), 0);
    UNIT_EQ_INT(oc[8], 0);
    UNIT_EQ_INT(memcmp(od, d, 5), 0);
    UNIT_EQ_INT(od[5], 0);

    /* Nothing to pack touches nothing. */
    herd__fusion_pack(buf, srcs, bytes, 0);
    UNIT_EQ_INT(buf[0], 1);
}

/* A plan drives the packing: every fused group round-trips through one buffer. */
static void test_pack_by_plan(void)
{
    enum { N = 6 };
    static int32_t data[N][16], back[N][16];
    herd_fusion_item_t items[N];
    for (int i = 0; i < N; i++) {
        int count = 1 + (i * 5) % 16;
        items[i] = item((int64_t)count * 4);
        for (int k = 0; k < 16; k++) {
            data[i][k] = i * 100 + k;
            back[i][k] = -1;
        }
    }
    plan_t p;
    make_plan(items, N, 64, &p);
    for (int64_t g = 0; g < p.ngroups; g++) {
        const herd_fusion_group_t *grp = &p.groups[g];
        const void *srcs[N];
        void *dsts[N];
        int64_t sizes[N];
        for (int64_t k = 0; k < grp->count; k++) {
            int64_t i = p.order[grp->first + k];
            srcs[k] = data[i];
            dsts[k] = back[i];
            sizes[k] = items[i].bytes;
        }
        int32_t fused[64];
        herd__fusion_pack(fused, srcs, sizes, grp->count);
        herd__fusion_unpack(fused, dsts, sizes, grp->count);
    }
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        int count = (int)(items[i].bytes / 4);
        for (int k = 0; k < 16; k++)
            wrong += back[i][k] != (k < count ? data[i][k] : -1);
    }
    UNIT_EQ_INT(wrong, 0);
}

/* A copy function that records what it was asked to do, so the tests see the pieces. */
typedef struct copy_log {
    int calls;
    int64_t bytes;
    int bad_ctx;
} copy_log_t;

static copy_log_t *expected_log;

static void logging_copy(void *ctx, void *dst, const void *src, size_t n)
{
    copy_log_t *log = ctx;
    if (log != expected_log)
        expected_log->bad_ctx++;
    log->calls++;
    log->bytes += (int64_t)n;
    memcpy(dst, src, n);
}

/* Packing a group in pieces of any size, the cursor carried between pieces, lays out the same
 * bytes as one pack; unpacking in (different) pieces restores every member. */
static void test_pack_and_unpack_in_pieces(void)
{
    enum { M = 5 };
    static unsigned char src[M][40], dst[M][41];
    const int64_t bytes[M] = {13, 1, 40, 7, 22};
    const void *srcs[M];
    void *dsts[M];
    int64_t total = 0;
    for (int i = 0; i < M; i++) {
        for (int k = 0; k < 40; k++)
            src[i][k] = (unsigned char)(i * 41 + k);
        srcs[i] = src[i];
        dsts[i] = dst[i];
        total += bytes[i];
    }
    unsigned char whole[128];
    herd__fusion_pack(whole, srcs, bytes, M);

    const int64_t pieces[] = {1, 3, 7, 13, 40, 83, 200};
    int bad_pack = 0, bad_unpack = 0, bad_cursor = 0, bad_ctx = 0, bad_bytes = 0;
    for (size_t pi = 0; pi < sizeof pieces / sizeof pieces[0]; pi++) {
        int64_t piece = pieces[pi];
        unsigned char chunked[128 + 1];
        memset(chunked, 0xEE, sizeof chunked);
        herd_fusion_cursor_t cur = {0, 0};
        copy_log_t log = {0, 0, 0};
        expected_log = &log;
        for (int64_t done = 0; done < total; done += piece) {
            int64_t n = total - done < piece ? total - done : piece;
            herd__fusion_pack_range(chunked + done, srcs, bytes, M, &cur, n, logging_copy, &log);
        }
        bad_pack += memcmp(chunked, whole, (size_t)total) != 0;
        bad_pack += chunked[total] != 0xEE; /* nothing written past the group */
        bad_cursor += cur.member != M || cur.offset != 0;
        bad_bytes += log.bytes != total;
        bad_ctx += log.bad_ctx;

        /* Unpack in pieces of another size. */
        int64_t upiece = pieces[(pi + 3) % (sizeof pieces / sizeof pieces[0])];
        memset(dst, 0, sizeof dst);
        herd_fusion_cursor_t ucur = {0, 0};
        copy_log_t ulog = {0, 0, 0};
        expected_log = &ulog;
        for (int64_t done = 0; done < total; done += upiece) {
            int64_t n = total - done < upiece ? total - done : upiece;
            herd__fusion_unpack_range(whole + done, dsts, bytes, M, &ucur, n, logging_copy, &ulog);
        }
        for (int i = 0; i < M; i++) {
            bad_unpack += memcmp(dst[i], src[i], (size_t)bytes[i]) != 0;
            bad_unpack += dst[i][bytes[i]] != 0; /* nothing past each member */
        }
        bad_cursor += ucur.member != M || ucur.offset != 0;
        bad_bytes += ulog.bytes != total;
        bad_ctx += ulog.bad_ctx;
    }
    UNIT_EQ_INT(bad_pack, 0);
    UNIT_EQ_INT(bad_unpack, 0);
    UNIT_EQ_INT(bad_cursor, 0);
    UNIT_EQ_INT(bad_bytes, 0);
    UNIT_EQ_INT(bad_ctx, 0);

    /* A piece that ends inside a member leaves the cursor there. */
    herd_fusion_cursor_t cur = {0, 0};
    copy_log_t log = {0, 0, 0};
    expected_log = &log;
    unsigned char part[64];
    herd__fusion_pack_range(part, srcs, bytes, M, &cur, 15, logging_copy, &log);
    UNIT_EQ_INT(cur.member, 2); /* 13 + 1 bytes done, 1 byte into member 2 */
    UNIT_EQ_INT(cur.offset, 1);
    UNIT_EQ_INT(log.bytes, 15);
    UNIT_EQ_INT(memcmp(part, whole, 15), 0);
    /* Nothing left to copy: n == 0, or the cursor at the end, copies nothing. */
    herd__fusion_pack_range(part, srcs, bytes, M, &cur, 0, logging_copy, &log);
    UNIT_EQ_INT(log.bytes, 15);
    herd_fusion_cursor_t end = {M, 0};
    herd__fusion_pack_range(part, srcs, bytes, M, &end, 10, logging_copy, &log);
    UNIT_EQ_INT(log.bytes, 15);
    UNIT_EQ_INT(end.member, M);
}

/* Kinds that never fuse (op_kind.h: variable counts, alltoall, barrier) go alone however small;
 * they split nothing else. And scaled packing multiplies each member by its own factor. */
static void test_solo_items_and_scaled_packing(void)
{
    herd_fusion_item_t items[4] = {item(8), item(8), item(8), item(8)};
    items[1].solo = 1;
    plan_t p;
    make_plan(items, 4, 1024, &p);
    char buf[256];
    UNIT_EQ_STR(plan_str(&p, buf, sizeof buf), "1:8 0,2,3:24F");

    float a[3] = {1, 2, 3}, b[2] = {4, 5}, packed[5], out_a[3], out_b[2];
    const void *srcs[2] = {a, b};
    void *dsts[2] = {out_a, out_b};
    int64_t bytes[2] = {sizeof a, sizeof b};
    double pre[2] = {2.0, 1.0}, post[2] = {1.0, 0.5};
    herd_fusion_scaling_t spre = {.factors = pre, .dtype = HERD_FLOAT32};
    herd_fusion_scaling_t spost = {.factors = post, .dtype = HERD_FLOAT32};
    herd_fusion_cursor_t cur = {0, 0};
    /* In two pieces that split member 0, as a chunked group would. */
    herd__fusion_pack_range_scaled(packed, srcs, bytes, 2, &cur, 8, &spre);
    herd__fusion_pack_range_scaled(packed + 2, srcs, bytes, 2, &cur, 12, &spre);
    float want[5] = {2, 4, 6, 4, 5};
    UNIT_EQ_MEM(packed, sizeof packed, want, sizeof want);
    cur = (herd_fusion_cursor_t){0, 0};
    herd__fusion_unpack_range_scaled(packed, dsts, bytes, 2, &cur, 20, &spost);
    float want_a[3] = {2, 4, 6}, want_b[2] = {2, 2.5f};
    UNIT_EQ_MEM(out_a, sizeof out_a, want_a, sizeof want_a);
    UNIT_EQ_MEM(out_b, sizeof out_b, want_b, sizeof want_b);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"packs_greedily_up_to_the_threshold", test_packs_greedily_up_to_the_threshold},
        {"large_tensors_go_alone_unfused", test_large_tensors_go_alone_unfused},
        {"zero_byte_tensors_go_alone", test_zero_byte_tensors_go_alone},
        {"threshold_zero_makes_every_tensor_solo", test_threshold_zero_makes_every_tensor_solo},
        {"classes_never_share_a_group", test_classes_never_share_a_group},
        {"groups_close_per_class", test_groups_close_per_class},
        {"more_classes_than_open_groups", test_more_classes_than_open_groups},
        {"random_plans_keep_every_invariant", test_random_plans_keep_every_invariant},
        {"pack_unpack_round_trip", test_pack_unpack_round_trip},
        {"pack_by_plan", test_pack_by_plan},
        {"pack_and_unpack_in_pieces", test_pack_and_unpack_in_pieces},
        {"solo_items_and_scaled_packing", test_solo_items_and_scaled_packing},
        CU_TEST_INFO_NULL,
    };
    return unit_run("fusion", tests);
}
