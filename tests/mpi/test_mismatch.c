/* test_mismatch.c - ranks that disagree about a tensor: count, dtype, op, broadcast root, and
 * allreduce against broadcast. Each completes with HERD_ERR_MISMATCH on every rank, with a
 * message that names the tensor, and herd keeps working afterwards. A cached name resubmitted
 * with new attributes on every rank is negotiated again; on one rank only, it is a mismatch.
 * With one rank nothing can disagree: the mismatch cases are skipped, the rest still runs. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herd.h"
#include "mpi_test.h"

enum { MAXCOUNT = 512 };

/* What one rank submits for a name. */
typedef struct spec {
    int broadcast, dtype, op, root;
    int64_t count;
} spec_t;

typedef struct sub {
    char name[64];
    spec_t spec;
    void *buf;
    uint64_t salt;
    herd_handle_t handle;
} sub_t;

static void start(sub_t *s, const char *name, spec_t spec, uint64_t salt)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->spec = spec;
    s->salt = salt;
    s->buf = mt_alloc(MAXCOUNT * 8);
    if (!spec.broadcast)
        mt_fill(spec.dtype, spec.op, mt_rank, salt, s->buf, spec.count);
    else if (mt_rank == spec.root)
        mt_fill(spec.dtype, MT_BCAST, mt_rank, salt, s->buf, spec.count);
    int rc = spec.broadcast ? herd_broadcast(name, s->buf, spec.count, spec.dtype, spec.root,
                                             HERD_DEVICE_CPU, &s->handle)
                            : herd_push_pull(name, s->buf, s->buf, spec.count, spec.dtype,
                                             spec.op, HERD_DEVICE_CPU, &s->handle);
    MT_CHECK_STATUS(rc, HERD_OK);
}

/* Waits; on success checks the exact result. */
static int finish(sub_t *s)
{
    int rc = mt_wait(s->handle, s->name);
    if (rc == HERD_OK) {
        int64_t bad = s->spec.broadcast
                          ? mt_verify_broadcast(s->spec.dtype, s->spec.root, s->salt, s->buf,
                                                s->spec.count, s->name)
                          : mt_verify_allreduce(s->spec.dtype, s->spec.op, mt_size, s->salt,
                                                s->buf, s->spec.count, s->name);
        MT_CHECK(bad == 0);
    }
    free(s->buf);
    return rc;
}

static void expect_ok(const char *name, spec_t spec, uint64_t salt)
{
    sub_t s;
    start(&s, name, spec, salt);
    MT_CHECK_STATUS(finish(&s), HERD_OK);
}

static void expect_mismatch_status(sub_t *s)
{
    int rc = finish(s);
    MT_CHECK_STATUS(rc, HERD_ERR_MISMATCH);
    if (!mt_last_error_has(s->name))
        fprintf(stderr, "[rank %d] mismatch message does not name '%s': %s\n", mt_rank,
                s->name, herd_last_error());
    MT_CHECK(mt_last_error_has(s->name));
}

static const spec_t plain = {.broadcast = 0, .dtype = HERD_FLOAT32, .op = HERD_SUM, .root = -1,
                             .count = 10};

/* The spec each rank submits for mismatch kind `kind`; the odd rank is `odd`. */
static spec_t mismatch_spec(int kind, int odd)
{
    spec_t s = plain;
    int me = mt_rank == odd;
    switch (kind) {
    case 0: /* count */
        s.count = me ? 11 : 10;
        break;
    case 1: /* dtype */
        s.dtype = me ? HERD_INT32 : HERD_FLOAT32;
        break;
    case 2: /* op */
        s.op = me ? HERD_MAX : HERD_SUM;
        break;
    case 3: /* broadcast root */
        s.broadcast = 1;
        s.root = me ? (odd + 1) % mt_size : odd;
        break;
    default: /* allreduce vs broadcast */
        if (me) {
            s.broadcast = 1;
            s.root = 0;
        }
        break;
    }
    return s;
}

static const char *const kind_names[5] = {"count", "dtype", "op", "root", "kind"};

/* Each kind alone, the odd rank being the last one, then rank 0; a normal op right after. */
static void test_each_kind(void)
{
    if (mt_size < 2)
        return;
    for (int pass = 0; pass < 2; pass++) {
        int odd = pass == 0 ? mt_size - 1 : 0;
        for (int kind = 0; kind < 5; kind++) {
            char name[64];
            snprintf(name, sizeof name, "mm.%s.odd%d", kind_names[kind], odd);
            sub_t s;
            start(&s, name, mismatch_spec(kind, odd), (uint64_t)kind);
            expect_mismatch_status(&s);
            if (kind == 0) {
                /* The message gives both counts. */
                MT_CHECK(mt_last_error_has("10") && mt_last_error_has("11"));
            }
            char after[64];
            snprintf(after, sizeof after, "mm.after.%s.odd%d", kind_names[kind], odd);
            expect_ok(after, plain, (uint64_t)(100 + kind));
            /* The name itself is free again and works once the ranks agree. */
            expect_ok(name, plain, (uint64_t)(200 + kind));
        }
    }
}

/* All kinds in flight together with good ops, submitted and waited in rank-specific orders. */
static void test_all_kinds_at_once(void)
{
    if (mt_size < 2)
        return;
    enum { NGOOD = 12, N = 5 + NGOOD };
    sub_t subs[N];
    int64_t order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    mt_rng_t rng = {.state = 31 + (uint64_t)mt_rank};
    mt_shuffle(&rng, order, N);
    for (int k = 0; k < N; k++) {
        int i = (int)order[k];
        char name[64];
        if (i < 5) {
            snprintf(name, sizeof name, "mm.batch.%s", kind_names[i]);
            start(&subs[i], name, mismatch_spec(i, i % mt_size), (uint64_t)i);
        } else {
            snprintf(name, sizeof name, "mm.batch.good%d", i);
            spec_t s = plain;
            s.dtype = i % MT_NUM_DTYPES;
            s.op = i % MT_NUM_OPS;
            s.count = 1 + i * 13;
            start(&subs[i], name, s, (uint64_t)(1000 + i));
        }
    }
    mt_shuffle(&rng, order, N);
    for (int k = 0; k < N; k++) {
        int i = (int)order[k];
        if (i < 5)
            expect_mismatch_status(&subs[i]);
        else
            MT_CHECK_STATUS(finish(&subs[i]), HERD_OK);
    }
}

/* With 3+ ranks, two ranks differ from rank 0: still one mismatch, on every rank. */
static void test_several_ranks_differ(void)
{
    if (mt_size < 3)
        return;
    spec_t s = plain;
    s.count = 10 + (mt_rank == 0 ? 0 : mt_rank);
    sub_t sub;
    start(&sub, "mm.several", s, 5);
    expect_mismatch_status(&sub);
    expect_ok("mm.several", plain, 6);
}

/* A cached name: new attributes on every rank are negotiated again; on one rank, mismatch.
 * Bystander tensors, cached too, are reduced in the same rounds every step. */
static void test_cached_renegotiation(void)
{
    enum { NBY = 20, NSTEPS = 12 };
    for (int step = 0; step < NSTEPS; step++) {
        spec_t s = plain;
        int expect = HERD_OK;
        switch (step) {
        case 0: case 1: s.count = 100; break;
        case 2: case 3: s.count = 200; break;                     /* every rank: new count */
        case 4:                                                   /* one rank: new count */
            s.count = mt_rank == mt_size - 1 ? 300 : 200;
            expect = mt_size > 1 ? HERD_ERR_MISMATCH : HERD_OK;
            break;
        case 5: s.count = 200; break;
        case 6:                                                   /* rank 0: new dtype */
            s.count = 200;
            s.dtype = mt_rank == 0 ? HERD_INT32 : HERD_FLOAT32;
            expect = mt_size > 1 ? HERD_ERR_MISMATCH : HERD_OK;
            break;
        case 7: s.count = 200; break;
        case 8: s.count = 200; s.op = HERD_MAX; break;            /* every rank: new op */
        case 9:                                                   /* becomes a broadcast */
            s.count = 200;
            s.broadcast = 1;
            s.root = mt_size - 1;
            break;
        case 10: s.count = 200; s.broadcast = 1; s.root = 0; break; /* new root */
        default: s.count = 100; break;                            /* back to the start */
        }
        sub_t bys[NBY];
        sub_t main_sub;
        /* Half the bystanders before, half after, so the rounds mix cached bits and names. */
        for (int b = 0; b < NBY / 2; b++) {
            char name[64];
            snprintf(name, sizeof name, "mm.bystander.%d", b);
            spec_t bs = plain;
            bs.dtype = b % MT_NUM_DTYPES;
            bs.count = 1 + b * 7;
            start(&bys[b], name, bs, (uint64_t)(step * 100 + b));
        }
        start(&main_sub, "mm.cached", s, (uint64_t)(7000 + step));
        for (int b = NBY / 2; b < NBY; b++) {
            char name[64];
            snprintf(name, sizeof name, "mm.bystander.%d", b);
            spec_t bs = plain;
            bs.dtype = b % MT_NUM_DTYPES;
            bs.count = 1 + b * 7;
            start(&bys[b], name, bs, (uint64_t)(step * 100 + b));
        }
        if (expect == HERD_OK) {
            int rc = finish(&main_sub);
            if (rc != HERD_OK)
                fprintf(stderr, "[rank %d] step %d of the cached name failed\n", mt_rank, step);
            MT_CHECK_STATUS(rc, HERD_OK);
        } else {
            expect_mismatch_status(&main_sub);
        }
        for (int b = NBY - 1; b >= 0; b--)
            MT_CHECK_STATUS(finish(&bys[b]), HERD_OK);
    }
}

/* Cached names again, but one rank submits well before the others (they sit in a barrier),
 * so an eviction is decided while the other ranks have nothing in flight, or the other way
 * round. Cases: the early rank brings new attributes; the early ranks keep the old ones and the
 * late rank changes; everyone changes, early rank first. */
static void test_cached_staggered(void)
{
    enum { NSTEPS = 9 };
    /* step: which rank submits early, which rank (if any) submits count 64 instead of 32 */
    static const int plan[NSTEPS][2] = {
        {0, -1}, {0, -1},  /* create and cache */
        {-2, -2},          /* early = last rank, which is also the odd one */
        {0, -1},           /* agree again */
        {0, -3},           /* early = rank 0; the last rank (late) is odd */
        {-2, -1},          /* agree again, last rank early */
        {0, -4},           /* everyone moves to count 64, rank 0 first */
        {-2, -4},          /* and stays there, last rank first (cached) */
        {0, -1},           /* back to 32 */
    };
    for (int step = 0; step < NSTEPS; step++) {
        int early = plan[step][0] == -2 ? mt_size - 1 : plan[step][0];
        int odd_rule = plan[step][1];
        spec_t s = plain;
        s.count = 32;
        int expect = HERD_OK;
        if (odd_rule == -2 || odd_rule == -3) {
            if (mt_rank == mt_size - 1)
                s.count = 64;
            if (mt_size > 1)
                expect = HERD_ERR_MISMATCH;
        } else if (odd_rule == -4) {
            s.count = 64;
        }
        sub_t sub;
        if (mt_rank != early && mt_size > 1)
            MPI_Barrier(MPI_COMM_WORLD);
        start(&sub, "mm.stagger", s, (uint64_t)(8000 + step));
        if (mt_rank == early && mt_size > 1) {
            /* Let the early request be negotiated (and any eviction decided) first. */
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            MPI_Barrier(MPI_COMM_WORLD);
        }
        if (expect == HERD_OK) {
            int rc = finish(&sub);
            if (rc != HERD_OK)
                fprintf(stderr, "[rank %d] stagger step %d failed\n", mt_rank, step);
            MT_CHECK_STATUS(rc, HERD_OK);
        } else {
            expect_mismatch_status(&sub);
        }
    }
}

/* A fuzz of the cache: 48 names for 30 steps. Every step, each name's attributes (kind, dtype,
 * op, root, count) either stay or change, the same on every rank; for some names one rank
 * deviates (mismatch on every rank). Ranks submit in their own random order with short pauses,
 * so evictions, re-announcements and new slots land in different rounds on different ranks. */
static spec_t fuzz_spec(int name, int step)
{
    /* Attributes change at "epochs" of random length per name. */
    mt_rng_t rng = {.state = 0xf00d + (uint64_t)name * 7919};
    int epoch = 0;
    for (int s = 1; s <= step; s++)
        if (mt_rng_range(&rng, 0, 3) == 0)
            epoch++;
    mt_rng_t a = {.state = mt_mix((uint64_t)name * 1000 + (uint64_t)epoch)};
    spec_t sp;
    sp.broadcast = mt_rng_range(&a, 0, 3) == 0;
    sp.dtype = (int)mt_rng_range(&a, 0, MT_NUM_DTYPES - 1);
    sp.op = sp.broadcast ? MT_BCAST : (int)mt_rng_range(&a, 0, MT_NUM_OPS - 1);
    sp.root = sp.broadcast ? (int)mt_rng_range(&a, 0, mt_size - 1) : -1;
    sp.count = mt_rng_range(&a, 0, MAXCOUNT);
    return sp;
}

static void test_renegotiation_fuzz(void)
{
    enum { NNAMES = 48, NSTEPS = 30 };
    sub_t subs[NNAMES];
    int expect[NNAMES];
    int64_t order[NNAMES];
    mt_rng_t mine = {.state = 777 + (uint64_t)mt_rank};
    for (int step = 0; step < NSTEPS; step++) {
        for (int i = 0; i < NNAMES; i++)
            order[i] = i;
        mt_shuffle(&mine, order, NNAMES);
        for (int k = 0; k < NNAMES; k++) {
            int i = (int)order[k];
            spec_t sp = fuzz_spec(i, step);
            expect[i] = HERD_OK;
            /* Now and then one rank deviates in one attribute. */
            uint64_t h = mt_mix((uint64_t)(step * 1000 + i));
            if (mt_size > 1 && h % 9 == 0) {
                int odd = (int)((h >> 8) % (uint64_t)mt_size);
                expect[i] = HERD_ERR_MISMATCH;
                if (mt_rank == odd) {
                    switch ((h >> 16) % 3) {
                    case 0: sp.count = sp.count == MAXCOUNT ? 0 : sp.count + 1; break;
                    case 1: sp.dtype = (sp.dtype + 1) % MT_NUM_DTYPES; break;
                    default:
                        if (sp.broadcast) {
                            sp.root = (sp.root + 1) % mt_size;
                        } else {
                            sp.broadcast = 1;
                            sp.op = MT_BCAST;
                            sp.root = 0;
                        }
                        break;
                    }
                }
            }
            char name[32];
            snprintf(name, sizeof name, "fuzz.%02d", i);
            start(&subs[i], name, sp, (uint64_t)(step * 100 + i));
            if (mt_rng_range(&mine, 0, 7) == 0) {
                struct timespec ts = {0, (long)mt_rng_range(&mine, 0, 300) * 1000};
                nanosleep(&ts, NULL);
            }
        }
        mt_shuffle(&mine, order, NNAMES);
        for (int k = 0; k < NNAMES; k++) {
            int i = (int)order[k];
            if (expect[i] == HERD_OK) {
                int rc = finish(&subs[i]);
                if (rc != HERD_OK)
                    fprintf(stderr, "[rank %d] fuzz step %d %s: %s\n", mt_rank, step,
                            subs[i].name, herd_last_error());
                MT_CHECK_STATUS(rc, HERD_OK);
            } else {
                expect_mismatch_status(&subs[i]);
            }
        }
    }
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"each_kind", test_each_kind},
        {"all_kinds_at_once", test_all_kinds_at_once},
        {"several_ranks_differ", test_several_ranks_differ},
        {"cached_renegotiation", test_cached_renegotiation},
        {"cached_staggered", test_cached_staggered},
        {"renegotiation_fuzz", test_renegotiation_fuzz},
    };
    return mt_main(argc, argv, "mismatch", tests, sizeof tests / sizeof tests[0],
                   MT_HERD_OWNS_MPI);
}
