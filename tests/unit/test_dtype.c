/* test_dtype.c - sizes and names, fp16/bf16 conversions (exact, exhaustive where it is cheap)
 * and the element loops: half-precision combine and average's division. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "unit.h"

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- sizes and names ------------------------------------------------------------------------ */

static void test_sizes_names_and_validity(void)
{
    static const struct {
        int dtype;
        int value;
        size_t size;
        const char *name;
    } d[] = {
        {HERD_UINT8, 0, 1, "uint8"},     {HERD_INT8, 1, 1, "int8"},
        {HERD_INT32, 2, 4, "int32"},     {HERD_INT64, 3, 8, "int64"},
        {HERD_FLOAT16, 4, 2, "float16"}, {HERD_BFLOAT16, 5, 2, "bfloat16"},
        {HERD_FLOAT32, 6, 4, "float32"}, {HERD_FLOAT64, 7, 8, "float64"},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        UNIT_EQ_INT(d[i].dtype, d[i].value);
        UNIT_EQ_INT(herd__dtype_valid(d[i].dtype), 1);
        UNIT_EQ_INT(herd__dtype_size(d[i].dtype), d[i].size);
        UNIT_EQ_INT(herd_dtype_size(d[i].dtype), (int)d[i].size);
        UNIT_EQ_STR(herd__dtype_name(d[i].dtype), d[i].name);
    }
    const int bad[] = {-1, 8, 100, -100};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        UNIT_EQ_INT(herd__dtype_valid(bad[i]), 0);
        UNIT_EQ_INT(herd__dtype_size(bad[i]), 0);
        UNIT_EQ_INT(herd_dtype_size(bad[i]), HERD_ERR_INVALID_ARG);
        UNIT_EQ_STR(herd__dtype_name(bad[i]), "unknown-dtype");
    }
    static const char *const ops[] = {"sum", "average", "min", "max", "product"};
    const int op_values[] = {HERD_SUM, HERD_AVERAGE, HERD_MIN, HERD_MAX, HERD_PRODUCT};
    for (int i = 0; i < 5; i++) {
        UNIT_EQ_INT(op_values[i], i);
        UNIT_EQ_INT(herd__op_valid(i), 1);
        UNIT_EQ_STR(herd__op_name(i), ops[i]);
    }
    UNIT_EQ_INT(herd__op_valid(-1), 0);
    UNIT_EQ_INT(herd__op_valid(5), 0);
    UNIT_EQ_STR(herd__op_name(5), "unknown-op");
    UNIT_EQ_STR(herd__op_name(-1), "unknown-op");
}

/* ---- fp16 ---------------------------------------------------------------------------------- */

static void test_fp16_known_values(void)
{
    static const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3C00},
        {-1.0f, 0xBC00},
        {2.0f, 0x4000},
        {0.5f, 0x3800},
        {1.5f, 0x3E00},
        {-2.5f, 0xC100},
        {65504.0f, 0x7BFF}, /* largest finite */
        {-65504.0f, 0xFBFF},
        {6.103515625e-05f, 0x0400},           /* 2^-14, smallest normal */
        {5.9604644775390625e-08f, 0x0001},    /* 2^-24, smallest subnormal */
        {6.0975551605224609375e-05f, 0x03FF}, /* largest subnormal, 1023 * 2^-24 */
        {0.333251953125f, 0x3555},            /* 1365 * 2^-12 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        UNIT_EQ_HEX(herd__float_to_fp16(cases[i].f), cases[i].h);
        UNIT_EQ_HEX(fbits(herd__fp16_to_float(cases[i].h)), fbits(cases[i].f));
    }
}

static void test_fp16_overflow_and_specials(void)
{
    /* 65520 is halfway between 65504 and 2^16: ties to even goes up to infinity. */
    UNIT_EQ_HEX(herd__float_to_fp16(65520.0f), 0x7C00);
    UNIT_EQ_HEX(herd__float_to_fp16(-65520.0f), 0xFC00);
    /* Just below the halfway point still rounds down to 65504. */
    UNIT_EQ_HEX(herd__float_to_fp16(bitsf(fbits(65520.0f) - 1)), 0x7BFF);
    UNIT_EQ_HEX(herd__float_to_fp16(65519.0f), 0x7BFF);
    UNIT_EQ_HEX(herd__float_to_fp16(1e10f), 0x7C00);
    UNIT_EQ_HEX(herd__float_to_fp16(3.0e38f), 0x7C00);
    UNIT_EQ_HEX(herd__float_to_fp16(INFINITY), 0x7C00);
    UNIT_EQ_HEX(herd__float_to_fp16(-INFINITY), 0xFC00);
    UNIT_EQ_HEX(fbits(herd__fp16_to_float(0x7C00)), fbits(INFINITY));
    UNIT_EQ_HEX(fbits(herd__fp16_to_float(0xFC00)), fbits(-INFINITY));

    /* NaN stays NaN both ways, with its sign. */
    uint16_t hn = herd__float_to_fp16(NAN);
    UNIT_EQ_HEX(hn & 0x7C00u, 0x7C00u);
    UNIT_EQ_INT((hn & 0x03FFu) != 0, 1);
    UNIT_EQ_INT(isnan(herd__fp16_to_float(0x7E00)), 1);
    UNIT_EQ_INT(isnan(herd__fp16_to_float(0x7C01)), 1);
    UNIT_EQ_INT(isnan(herd__fp16_to_float(0xFFFF)), 1);
    uint16_t hneg = herd__float_to_fp16(-NAN);
    UNIT_EQ_HEX(hneg & 0xFC00u, 0xFC00u);
    UNIT_EQ_INT((hneg & 0x03FFu) != 0, 1);
    /* A signalling-looking float NaN (payload only in low bits) must not become infinity. */
    uint16_t hlow = herd__float_to_fp16(bitsf(0x7F800001u));
    UNIT_EQ_INT((hlow & 0x03FFu) != 0, 1);
}

static void test_fp16_ties_to_even(void)
{
    const float ulp = 9.765625e-04f; /* 2^-10: fp16 spacing in [1, 2) */
    /* 1 + 2^-11 is halfway between 1.0 (even) and 1 + 2^-10: rounds to 1.0. */
    UNIT_EQ_HEX(herd__float_to_fp16(1.0f + ulp / 2), 0x3C00);
    /* 1 + 3*2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even): rounds up. */
    UNIT_EQ_HEX(herd__float_to_fp16(1.0f + 3 * ulp / 2), 0x3C02);
    /* Anything past the halfway point rounds up; anything before, down. */
    UNIT_EQ_HEX(herd__float_to_fp16(bitsf(fbits(1.0f + ulp / 2) + 1)), 0x3C01);
    UNIT_EQ_HEX(herd__float_to_fp16(bitsf(fbits(1.0f + 3 * ulp / 2) - 1)), 0x3C01);
    /* Negative values mirror. */
    UNIT_EQ_HEX(herd__float_to_fp16(-(1.0f + ulp / 2)), 0xBC00);
    UNIT_EQ_HEX(herd__float_to_fp16(-(1.0f + 3 * ulp / 2)), 0xBC02);
    /* Carry out of the mantissa into the exponent: 2 - 2^-11 rounds to 2.0 (even). */
    UNIT_EQ_HEX(herd__float_to_fp16(2.0f - ulp / 2), 0x4000);
    /* Subnormal range: 2^-25 is half the smallest step and goes to zero (even); 3 * 2^-25 is
     * 1.5 steps and goes to 2 steps (even). */
    UNIT_EQ_HEX(herd__float_to_fp16(2.98023223876953125e-08f), 0x0000);
    UNIT_EQ_HEX(herd__float_to_fp16(8.94069671630859375e-08f), 0x0002);
    UNIT_EQ_HEX(herd__float_to_fp16(bitsf(fbits(2.98023223876953125e-08f) + 1)), 0x0001);
    /* Halfway between the largest subnormal (odd) and the smallest normal rounds to normal. */
    UNIT_EQ_HEX(herd__float_to_fp16(ldexpf(2047.0f, -25)), 0x0400);
    UNIT_EQ_HEX(herd__float_to_fp16(nextafterf(ldexpf(2047.0f, -25), 0.0f)), 0x03FF);
    /* Tiny values flush to a signed zero. */
    UNIT_EQ_HEX(herd__float_to_fp16(1e-30f), 0x0000);
    UNIT_EQ_HEX(herd__float_to_fp16(-1e-30f), 0x8000);
    UNIT_EQ_HEX(herd__float_to_fp16(bitsf(1)), 0x0000); /* smallest float subnormal */
}

/* The exact value of a finite fp16 pattern, computed independently of the code under test. */
static double fp16_reference(uint16_t h)
{
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    double v = exp == 0 ? ldexp(mant, -24) : ldexp(1024 + mant, exp - 25);
    return (h & 0x8000) ? -v : v;
}

static void test_fp16_exhaustive_decode_and_round_trip(void)
{
    int bad_decode = 0, bad_trip = 0;
    uint32_t first_decode = 0, first_trip = 0;
    for (uint32_t h = 0; h <= 0xFFFF; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0)
            continue; /* NaN: covered in test_fp16_overflow_and_specials */
        float f = herd__fp16_to_float((uint16_t)h);
        if ((h & 0x7FFF) == 0x7C00) {
            if (!isinf(f) || (signbit(f) != 0) != ((h & 0x8000) != 0)) {
                if (bad_decode++ == 0)
                    first_decode = h;
            }
        } else if ((double)f != fp16_reference((uint16_t)h) ||
                   (signbit(f) != 0) != ((h & 0x8000) != 0)) {
            if (bad_decode++ == 0)
                first_decode = h;
        }
        if (herd__float_to_fp16(f) != h) {
            if (bad_trip++ == 0)
                first_trip = h;
        }
    }
    if (bad_decode)
        UNIT_FAIL("%d fp16 patterns decode wrongly, first 0x%04x", bad_decode, first_decode);
    if (bad_trip)
        UNIT_FAIL("%d fp16 patterns do not round-trip, first 0x%04x", bad_trip, first_trip);
    UNIT_EQ_INT(bad_decode, 0);
    UNIT_EQ_INT(bad_trip, 0);
}

/* Round to nearest, ties to even, into fp16 for a finite non-negative float: an independent
 * reference using exact double arithmetic over the ordered table of positive fp16 values. */
static double fp16_values[0x7C01]; /* index = bit pattern, 0x7C00 = 65536 as the overflow edge */

static void build_fp16_table(void)
{
    for (uint32_t h = 0; h < 0x7C00; h++)
        fp16_values[h] = fp16_reference((uint16_t)h);
    fp16_values[0x7C00] = 65536.0; /* where the next binade would start: rounds to infinity */
}

static uint16_t fp16_round_reference(float f)
{
    double x = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (x >= 65536.0)
        return sign | 0x7C00;
    /* Largest pattern whose value is <= x. */
    uint32_t lo = 0, hi = 0x7C00;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (fp16_values[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    if (fp16_values[hi] <= x)
        lo = hi;
    if (fp16_values[lo] == x)
        return (uint16_t)(sign | lo);
    uint32_t up = lo + 1;
    double dlo = x - fp16_values[lo], dup = fp16_values[up] - x;
    uint32_t pick = dlo < dup ? lo : dup < dlo ? up : ((lo & 1) ? up : lo);
    return (uint16_t)(sign | pick);
}

static void test_fp16_rounding_matches_reference(void)
{
    build_fp16_table();
    int bad = 0;
    uint32_t first = 0;
    /* Every halfway point between neighbours, and one float ulp either side of it. */
    for (uint32_t h = 0; h < 0x7C00; h++) {
        double mid = (fp16_values[h] + fp16_values[h + 1]) / 2; /* exact in double */
        float m = (float)mid;                                   /* exact: fp16 midpoints fit */
        const float probes[] = {m, nextafterf(m, 0.0f), nextafterf(m, INFINITY)};
        for (int k = 0; k < 3; k++) {
            for (int s = 0; s < 2; s++) {
                float f = s ? -probes[k] : probes[k];
                if (herd__float_to_fp16(f) != fp16_round_reference(f) && bad++ == 0)
                    first = fbits(f);
            }
        }
    }
    /* A stride through all finite floats. */
    for (uint64_t u = 0; u < 0x7F800000u; u += 4099) {
        float f = bitsf((uint32_t)u);
        if (herd__float_to_fp16(f) != fp16_round_reference(f) && bad++ == 0)
            first = (uint32_t)u;
    }
    if (bad)
        UNIT_FAIL("%d floats round to the wrong fp16, first float bits 0x%08x (got 0x%04x, "
                  "expected 0x%04x)",
                  bad, first, herd__float_to_fp16(bitsf(first)),
                  fp16_round_reference(bitsf(first)));
    UNIT_EQ_INT(bad, 0);
}

/* ---- bf16 ---------------------------------------------------------------------------------- */

static void test_bf16_known_values(void)
{
    UNIT_EQ_HEX(herd__float_to_bf16(1.0f), 0x3F80);
    UNIT_EQ_HEX(herd__float_to_bf16(-1.0f), 0xBF80);
    UNIT_EQ_HEX(herd__float_to_bf16(0.0f), 0x0000);
    UNIT_EQ_HEX(herd__float_to_bf16(-0.0f), 0x8000);
    UNIT_EQ_HEX(herd__float_to_bf16(3.0f), 0x4040);
    UNIT_EQ_HEX(herd__float_to_bf16(INFINITY), 0x7F80);
    UNIT_EQ_HEX(herd__float_to_bf16(-INFINITY), 0xFF80);
    UNIT_EQ_HEX(fbits(herd__bf16_to_float(0x3F80)), fbits(1.0f));
    UNIT_EQ_HEX(fbits(herd__bf16_to_float(0xC0A0)), fbits(-5.0f));
    UNIT_EQ_HEX(fbits(herd__bf16_to_float(0x0001)), 0x00010000u); /* subnormal kept */

    /* Round to nearest even at the 16-bit boundary. */
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0x3F808000u)), 0x3F80); /* tie, even below */
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0x3F818000u)), 0x3F82); /* tie, odd below: up */
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0x3F808001u)), 0x3F81); /* past the tie */
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0x3F807FFFu)), 0x3F80); /* before the tie */
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0x3F7FFFFFu)), 0x3F80); /* carries into exponent */
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0xBF818000u)), 0xBF82);
    /* The largest finite floats round to infinity only past the halfway point. */
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0x7F7F7FFFu)), 0x7F7F);
    UNIT_EQ_HEX(herd__float_to_bf16(bitsf(0x7F7FFFFFu)), 0x7F80);

    /* NaN stays NaN, including payloads that only live in the low 16 bits. */
    const uint32_t nans[] = {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7F80FFFFu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t b = herd__float_to_bf16(bitsf(nans[i]));
        UNIT_EQ_HEX(b & 0x7F80u, 0x7F80u);
        UNIT_EQ_INT((b & 0x007Fu) != 0, 1);
        UNIT_EQ_HEX(b & 0x8000u, (nans[i] >> 16) & 0x8000u);
        UNIT_EQ_INT(isnan(herd__bf16_to_float(b)), 1);
    }
}

static uint16_t bf16_round_reference(float f)
{
    uint32_t u = fbits(f);
    uint16_t lo = (uint16_t)(u >> 16);
    uint32_t rest = u & 0xFFFFu;
    if (rest > 0x8000u || (rest == 0x8000u && (lo & 1)))
        return (uint16_t)(lo + 1);
    return lo;
}

static void test_bf16_exhaustive_round_trip_and_rounding(void)
{
    int bad = 0;
    uint32_t first = 0;
    for (uint32_t b = 0; b <= 0xFFFF; b++) {
        if ((b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0)
            continue;
        if (herd__float_to_bf16(herd__bf16_to_float((uint16_t)b)) != b && bad++ == 0)
            first = b;
    }
    if (bad)
        UNIT_FAIL("%d bf16 patterns do not round-trip, first 0x%04x", bad, first);
    UNIT_EQ_INT(bad, 0);

    bad = 0;
    for (uint64_t u = 0; u < 0x100000000u; u += 65521) {
        float f = bitsf((uint32_t)u);
        if (isnan(f))
            continue;
        if (herd__float_to_bf16(f) != bf16_round_reference(f) && bad++ == 0)
            first = (uint32_t)u;
    }
    if (bad)
        UNIT_FAIL("%d floats round to the wrong bf16, first float bits 0x%08x", bad, first);
    UNIT_EQ_INT(bad, 0);
}

/* ---- element loops ----------------------------------------------------------------------- */

static void test_half_combine_fp16(void)
{
    /* inout = {1, 2, -3, 0.5}, in = {2, 2, 1, 65504}. */
    const uint16_t in[] = {0x4000, 0x4000, 0x3C00, 0x7BFF};
    const uint16_t start[] = {0x3C00, 0x4000, 0xC200, 0x3800};
    uint16_t v[4];

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_FLOAT16, HERD_SUM, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x4200); /* 3 */
    UNIT_EQ_HEX(v[1], 0x4400); /* 4 */
    UNIT_EQ_HEX(v[2], 0xC000); /* -2 */
    UNIT_EQ_HEX(v[3], 0x7BFF); /* 65504.5 rounds to 65504 */

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_FLOAT16, HERD_MIN, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x3C00);
    UNIT_EQ_HEX(v[1], 0x4000);
    UNIT_EQ_HEX(v[2], 0xC200);
    UNIT_EQ_HEX(v[3], 0x3800);

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_FLOAT16, HERD_MAX, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x4000);
    UNIT_EQ_HEX(v[1], 0x4000);
    UNIT_EQ_HEX(v[2], 0x3C00);
    UNIT_EQ_HEX(v[3], 0x7BFF);

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_FLOAT16, HERD_PRODUCT, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x4000); /* 2 */
    UNIT_EQ_HEX(v[1], 0x4400); /* 4 */
    UNIT_EQ_HEX(v[2], 0xC200); /* -3 */
    UNIT_EQ_HEX(v[3], 0x77FF); /* 32752 */

    /* Sum that overflows fp16 becomes infinity; count 0 touches nothing. */
    uint16_t big = 0x7BFF;
    const uint16_t add = 0x7BFF;
    herd__half_combine(HERD_FLOAT16, HERD_SUM, &add, &big, 1);
    UNIT_EQ_HEX(big, 0x7C00);
    uint16_t untouched = 0x1234;
    herd__half_combine(HERD_FLOAT16, HERD_SUM, &add, &untouched, 0);
    UNIT_EQ_HEX(untouched, 0x1234);
}

static void test_half_combine_bf16(void)
{
    /* inout = {1, 3, -5, 2^-100}, in = {2, 0.5, 4, 1}. */
    const uint16_t in[] = {0x4000, 0x3F00, 0x4080, 0x3F80};
    const uint16_t start[] = {0x3F80, 0x4040, 0xC0A0, 0x0D80};
    uint16_t v[4];

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_BFLOAT16, HERD_SUM, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x4040); /* 3 */
    UNIT_EQ_HEX(v[1], 0x4060); /* 3.5 */
    UNIT_EQ_HEX(v[2], 0xBF80); /* -1 */
    UNIT_EQ_HEX(v[3], 0x3F80); /* 1 + 2^-100 rounds to 1 */

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_BFLOAT16, HERD_MIN, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x3F80);
    UNIT_EQ_HEX(v[1], 0x3F00);
    UNIT_EQ_HEX(v[2], 0xC0A0);
    UNIT_EQ_HEX(v[3], 0x0D80);

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_BFLOAT16, HERD_MAX, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x4000);
    UNIT_EQ_HEX(v[1], 0x4040);
    UNIT_EQ_HEX(v[2], 0x4080);
    UNIT_EQ_HEX(v[3], 0x3F80);

    memcpy(v, start, sizeof v);
    herd__half_combine(HERD_BFLOAT16, HERD_PRODUCT, in, v, 4);
    UNIT_EQ_HEX(v[0], 0x4000); /* 2 */
    UNIT_EQ_HEX(v[1], 0x3FC0); /* 1.5 */
    UNIT_EQ_HEX(v[2], 0xC1A0); /* -20 */
    UNIT_EQ_HEX(v[3], 0x0D80); /* unchanged by * 1 */
}

static void test_divide_integers_truncate_toward_zero(void)
{
    int32_t i32[] = {-7, 7, -8, 0, -1, 2147483647, -2147483647 - 1};
    herd__dtype_divide(HERD_INT32, i32, 7, 2);
    const int32_t e32[] = {-3, 3, -4, 0, 0, 1073741823, -1073741824};
    for (int i = 0; i < 7; i++)
        UNIT_EQ_INT(i32[i], e32[i]);

    int64_t i64[] = {-7, 7, INT64_MAX, INT64_MIN, -5};
    herd__dtype_divide(HERD_INT64, i64, 5, 2);
    const int64_t e64[] = {-3, 3, INT64_MAX / 2, INT64_MIN / 2, -2};
    for (int i = 0; i < 5; i++)
        UNIT_EQ_INT(i64[i], e64[i]);

    int8_t i8[] = {-7, 7, -128, 127, -1};
    herd__dtype_divide(HERD_INT8, i8, 5, 2);
    const int8_t e8[] = {-3, 3, -64, 63, 0};
    for (int i = 0; i < 5; i++)
        UNIT_EQ_INT(i8[i], e8[i]);

    uint8_t u8[] = {250, 255, 3, 0};
    herd__dtype_divide(HERD_UINT8, u8, 4, 4);
    const uint8_t eu8[] = {62, 63, 0, 0};
    for (int i = 0; i < 4; i++)
        UNIT_EQ_INT(u8[i], eu8[i]);

    int32_t three[] = {-10, 10, 11};
    herd__dtype_divide(HERD_INT32, three, 3, 3);
    UNIT_EQ_INT(three[0], -3);
    UNIT_EQ_INT(three[1], 3);
    UNIT_EQ_INT(three[2], 3);
}

static void test_divide_floats(void)
{
    float f32[] = {7.0f, -7.0f, 1.0f, 0.0f};
    herd__dtype_divide(HERD_FLOAT32, f32, 4, 2);
    UNIT_EQ_DOUBLE(f32[0], 3.5);
    UNIT_EQ_DOUBLE(f32[1], -3.5);
    UNIT_EQ_DOUBLE(f32[2], 0.5);
    UNIT_EQ_DOUBLE(f32[3], 0.0);

    float third[] = {1.0f};
    herd__dtype_divide(HERD_FLOAT32, third, 1, 3);
    UNIT_EQ_HEX(fbits(third[0]), fbits(1.0f / 3.0f)); /* divided in float, not double */

    double f64[] = {7.0, -9.0, 1.0};
    herd__dtype_divide(HERD_FLOAT64, f64, 3, 4);
    UNIT_EQ_DOUBLE(f64[0], 1.75);
    UNIT_EQ_DOUBLE(f64[1], -2.25);
    UNIT_EQ_DOUBLE(f64[2], 0.25);

    uint16_t h[] = {0x4200, 0xC500, 0x3C00, 0x0001}; /* 3, -5, 1, 2^-24 */
    herd__dtype_divide(HERD_FLOAT16, h, 4, 2);
    UNIT_EQ_HEX(h[0], 0x3E00); /* 1.5 */
    UNIT_EQ_HEX(h[1], 0xC100); /* -2.5 */
    UNIT_EQ_HEX(h[2], 0x3800); /* 0.5 */
    UNIT_EQ_HEX(h[3], 0x0000); /* 2^-25: tie, to even zero */

    uint16_t b[] = {0x4040, 0xC0A0, 0x3F80}; /* 3, -5, 1 */
    herd__dtype_divide(HERD_BFLOAT16, b, 3, 2);
    UNIT_EQ_HEX(b[0], 0x3FC0); /* 1.5 */
    UNIT_EQ_HEX(b[1], 0xC020); /* -2.5 */
    UNIT_EQ_HEX(b[2], 0x3F00); /* 0.5 */

    /* Count 0 and an unknown dtype touch nothing. */
    int32_t keep[] = {9};
    herd__dtype_divide(HERD_INT32, keep, 0, 2);
    herd__dtype_divide(42, keep, 1, 2);
    UNIT_EQ_INT(keep[0], 9);
}

static void test_scale_copy_and_finish(void)
{
    float f[4] = {1.5f, -2.0f, 3.0f, 0.0f}, g[4];
    herd__dtype_scale_copy(HERD_FLOAT32, g, f, 4, 2.0);
    UNIT_EQ_DOUBLE(g[0], 3.0);
    UNIT_EQ_DOUBLE(g[1], -4.0);
    UNIT_EQ_DOUBLE(f[0], 1.5); /* out of place: the input is untouched */
    herd__dtype_finish(HERD_FLOAT32, g, 4, 2, 0.5); /* /2 then *0.5 */
    UNIT_EQ_DOUBLE(g[0], 0.75);
    UNIT_EQ_DOUBLE(g[2], 1.5);
    int32_t i[3] = {7, -7, 100};
    herd__dtype_scale_copy(HERD_INT32, i, i, 3, 0.5); /* truncates toward zero */
    UNIT_EQ_INT(i[0], 3);
    UNIT_EQ_INT(i[1], -3);
    UNIT_EQ_INT(i[2], 50);
    int64_t j[2] = {-9, 9};
    herd__dtype_finish(HERD_INT64, j, 2, 2, 3.0); /* -9/2 = -4 (C), then *3 */
    UNIT_EQ_INT(j[0], -12);
    UNIT_EQ_INT(j[1], 12);
    uint16_t h[2] = {herd__float_to_fp16(3.0f), herd__float_to_fp16(-0.5f)};
    herd__dtype_scale_copy(HERD_FLOAT16, h, h, 2, 4.0);
    UNIT_EQ_DOUBLE(herd__fp16_to_float(h[0]), 12.0);
    UNIT_EQ_DOUBLE(herd__fp16_to_float(h[1]), -2.0);
    uint16_t b[1] = {herd__float_to_bf16(6.0f)};
    herd__dtype_finish(HERD_BFLOAT16, b, 1, 4, 1.0);
    UNIT_EQ_DOUBLE(herd__bf16_to_float(b[0]), 1.5);
    double d[1] = {10.0};
    herd__dtype_finish(HERD_FLOAT64, d, 1, 1, 1.0); /* nothing to do */
    UNIT_EQ_DOUBLE(d[0], 10.0);
}

static void test_fill_identity(void)
{
    float f[2];
    herd__dtype_fill_identity(HERD_FLOAT32, HERD_MIN, f, 2);
    UNIT_EQ_INT(isinf(f[0]) && f[0] > 0, 1);
    herd__dtype_fill_identity(HERD_FLOAT32, HERD_MAX, f, 2);
    UNIT_EQ_INT(isinf(f[1]) && f[1] < 0, 1);
    herd__dtype_fill_identity(HERD_FLOAT32, HERD_PRODUCT, f, 2);
    UNIT_EQ_DOUBLE(f[1], 1.0);
    herd__dtype_fill_identity(HERD_FLOAT32, HERD_AVERAGE, f, 2);
    UNIT_EQ_DOUBLE(f[0], 0.0);
    int8_t c[1];
    herd__dtype_fill_identity(HERD_INT8, HERD_MIN, c, 1);
    UNIT_EQ_INT(c[0], INT8_MAX);
    herd__dtype_fill_identity(HERD_INT8, HERD_MAX, c, 1);
    UNIT_EQ_INT(c[0], INT8_MIN);
    uint8_t u[1];
    herd__dtype_fill_identity(HERD_UINT8, HERD_MAX, u, 1);
    UNIT_EQ_INT(u[0], 0);
    int64_t l[1];
    herd__dtype_fill_identity(HERD_INT64, HERD_PRODUCT, l, 1);
    UNIT_EQ_INT(l[0], 1);
    uint16_t h[1];
    herd__dtype_fill_identity(HERD_FLOAT16, HERD_MIN, h, 1);
    UNIT_EQ_INT(isinf(herd__fp16_to_float(h[0])) && herd__fp16_to_float(h[0]) > 0, 1);
    herd__dtype_fill_identity(HERD_BFLOAT16, HERD_PRODUCT, h, 1);
    UNIT_EQ_DOUBLE(herd__bf16_to_float(h[0]), 1.0);
    herd__dtype_fill_identity(HERD_BFLOAT16, HERD_MAX, h, 1);
    UNIT_EQ_INT(isinf(herd__bf16_to_float(h[0])) && herd__bf16_to_float(h[0]) < 0, 1);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"sizes_names_and_validity", test_sizes_names_and_validity},
        {"fp16_known_values", test_fp16_known_values},
        {"fp16_overflow_and_specials", test_fp16_overflow_and_specials},
        {"fp16_ties_to_even", test_fp16_ties_to_even},
        {"fp16_exhaustive_decode_and_round_trip", test_fp16_exhaustive_decode_and_round_trip},
        {"fp16_rounding_matches_reference", test_fp16_rounding_matches_reference},
        {"bf16_known_values", test_bf16_known_values},
        {"bf16_exhaustive_round_trip_and_rounding", test_bf16_exhaustive_round_trip_and_rounding},
        {"half_combine_fp16", test_half_combine_fp16},
        {"half_combine_bf16", test_half_combine_bf16},
        {"divide_integers_truncate_toward_zero", test_divide_integers_truncate_toward_zero},
        {"divide_floats", test_divide_floats},
        {"scale_copy_and_finish", test_scale_copy_and_finish},
        {"fill_identity", test_fill_identity},
        CU_TEST_INFO_NULL,
    };
    return unit_run("dtype", tests);
}
