/* dtype.c - element types. The half-precision conversions are written out (not taken from
 * <immintrin.h> or _Float16) so the library builds and rounds identically on every compiler. */
#include "dtype.h"

#include <math.h>
#include <string.h>

static const size_t dtype_sizes[HERD_NUM_DTYPES] = {1, 1, 4, 8, 2, 2, 4, 8};
static const char *const dtype_names[HERD_NUM_DTYPES] = {
    "uint8", "int8", "int32", "int64", "float16", "bfloat16", "float32", "float64"};
static const char *const op_names[HERD_NUM_OPS] = {"sum", "average", "min", "max", "product"};

int herd__dtype_valid(int dtype)
{
    return dtype >= 0 && dtype < HERD_NUM_DTYPES;
}

int herd__op_valid(int op)
{
    return op >= 0 && op < HERD_NUM_OPS;
}

size_t herd__dtype_size(int dtype)
{
    return herd__dtype_valid(dtype) ? dtype_sizes[dtype] : 0;
}

const char *herd__dtype_name(int dtype)
{
    return herd__dtype_valid(dtype) ? dtype_names[dtype] : "unknown-dtype";
}

const char *herd__op_name(int op)
{
    return herd__op_valid(op) ? op_names[op] : "unknown-op";
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float herd__fp16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf or nan */
        return bits_float(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_float(sign);
        /* Subnormal: value is mant * 2^-24, exact in float32. */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t herd__float_to_fp16(float f)
{
    uint32_t u = float_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) /* inf stays inf; nan stays a quiet nan */
        return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    if (abs >= 0x477ff000u) /* rounds to beyond 65504: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (abs < 0x38800000u) {
        /* Result is subnormal (or zero): scale so the integer part is the fp16 mantissa, and let
         * the float adder round to nearest even. 2^-24 is the fp16 subnormal step. */
        float a = bits_float(abs);
        float scaled = a * 16777216.0f; /* a / 2^-24, exact */
        /* Round half to even with the magic-number trick: adding 2^23 forces rounding at 1. */
        float r = (scaled + 8388608.0f) - 8388608.0f;
        return (uint16_t)(sign | (uint16_t)r);
    }
    /* Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even. */
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += 0xfffu + mant_odd;
    return (uint16_t)(sign | (uint16_t)((abs - 0x38000000u) >> 13));
}

float herd__bf16_to_float(uint16_t b)
{
    return bits_float((uint32_t)b << 16);
}

uint16_t herd__float_to_bf16(float f)
{
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* nan: keep it a quiet nan */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float combine(int op, float a, float b)
{
    switch (op) {
    case HERD_MIN:
        return b < a ? b : a;
    case HERD_MAX:
        return b > a ? b : a;
    case HERD_PRODUCT:
        return a * b;
    default:
        return a + b;
    }
}

void herd__half_combine(int dtype, int op, const uint16_t *in, uint16_t *inout, size_t count)
{
    if (dtype == HERD_FLOAT16) {
        for (size_t i = 0; i < count; i++)
            inout[i] = herd__float_to_fp16(
                combine(op, herd__fp16_to_float(inout[i]), herd__fp16_to_float(in[i])));
    } else {
        for (size_t i = 0; i < count; i++)
            inout[i] = herd__float_to_bf16(
                combine(op, herd__bf16_to_float(inout[i]), herd__bf16_to_float(in[i])));
    }
}

#define DIVIDE_LOOP(type, cast)                                                                \
    do {                                                                                       \
        type *p = buf;                                                                         \
        for (size_t i = 0; i < count; i++)                                                     \
            p[i] = (type)(p[i] / (cast)divisor);                                               \
    } while (0)

void herd__dtype_divide(int dtype, void *buf, size_t count, int divisor)
{
    switch (dtype) {
    case HERD_UINT8: DIVIDE_LOOP(uint8_t, int); break;
    case HERD_INT8: DIVIDE_LOOP(int8_t, int); break;
    case HERD_INT32: DIVIDE_LOOP(int32_t, int32_t); break;
    case HERD_INT64: DIVIDE_LOOP(int64_t, int64_t); break;
    case HERD_FLOAT32: DIVIDE_LOOP(float, float); break;
    case HERD_FLOAT64: DIVIDE_LOOP(double, double); break;
    case HERD_FLOAT16: {
        uint16_t *p = buf;
        for (size_t i = 0; i < count; i++)
            p[i] = herd__float_to_fp16(herd__fp16_to_float(p[i]) / (float)divisor);
        break;
    }
    case HERD_BFLOAT16: {
        uint16_t *p = buf;
        for (size_t i = 0; i < count; i++)
            p[i] = herd__float_to_bf16(herd__bf16_to_float(p[i]) / (float)divisor);
        break;
    }
    default:
        break;
    }
}

#define SCALE_INT_LOOP(type)                                                                   \
    do {                                                                                       \
        const type *in = src;                                                                  \
        type *out = dst;                                                                       \
        for (size_t i = 0; i < count; i++)                                                     \
            out[i] = (type)((double)in[i] * factor);                                           \
    } while (0)

void herd__dtype_scale_copy(int dtype, void *dst, const void *src, size_t count, double factor)
{
    switch (dtype) {
    case HERD_UINT8: SCALE_INT_LOOP(uint8_t); break;
    case HERD_INT8: SCALE_INT_LOOP(int8_t); break;
    case HERD_INT32: SCALE_INT_LOOP(int32_t); break;
    case HERD_INT64: SCALE_INT_LOOP(int64_t); break;
    case HERD_FLOAT32: {
        const float *in = src;
        float *out = dst;
        float f = (float)factor;
        for (size_t i = 0; i < count; i++)
            out[i] = in[i] * f;
        break;
    }
    case HERD_FLOAT64: {
        const double *in = src;
        double *out = dst;
        for (size_t i = 0; i < count; i++)
            out[i] = in[i] * factor;
        break;
    }
    case HERD_FLOAT16: {
        const uint16_t *in = src;
        uint16_t *out = dst;
        float f = (float)factor;
        for (size_t i = 0; i < count; i++)
            out[i] = herd__float_to_fp16(herd__fp16_to_float(in[i]) * f);
        break;
    }
    case HERD_BFLOAT16: {
        const uint16_t *in = src;
        uint16_t *out = dst;
        float f = (float)factor;
        for (size_t i = 0; i < count; i++)
            out[i] = herd__float_to_bf16(herd__bf16_to_float(in[i]) * f);
        break;
    }
    default:
        break;
    }
}

void herd__dtype_finish(int dtype, void *buf, size_t count, int divisor, double postscale)
{
    if (divisor > 1 && postscale != 1.0) {
        /* One pass over memory for both steps, each rounded as it would be alone. */
        switch (dtype) {
        case HERD_FLOAT32: {
            float *p = buf, f = (float)postscale, d = (float)divisor;
            for (size_t i = 0; i < count; i++)
                p[i] = p[i] / d * f;
            return;
        }
        case HERD_FLOAT64: {
            double *p = buf;
            for (size_t i = 0; i < count; i++)
                p[i] = p[i] / (double)divisor * postscale;
            return;
        }
        default:
            break;
        }
    }
    if (divisor > 1)
        herd__dtype_divide(dtype, buf, count, divisor);
    if (postscale != 1.0)
        herd__dtype_scale_copy(dtype, buf, buf, count, postscale);
}

#define FILL_LOOP(type, value)                                                                 \
    do {                                                                                       \
        type *p = buf;                                                                         \
        for (size_t i = 0; i < count; i++)                                                     \
            p[i] = (value);                                                                    \
    } while (0)

void herd__dtype_fill_identity(int dtype, int op, void *buf, size_t count)
{
    if (op == HERD_SUM || op == HERD_AVERAGE) {
        memset(buf, 0, count * herd__dtype_size(dtype));
        return;
    }
    int one = op == HERD_PRODUCT, top = op == HERD_MIN; /* MIN: the largest; MAX: the smallest */
    switch (dtype) {
    case HERD_UINT8: FILL_LOOP(uint8_t, one ? 1 : top ? UINT8_MAX : 0); break;
    case HERD_INT8: FILL_LOOP(int8_t, one ? 1 : top ? INT8_MAX : INT8_MIN); break;
    case HERD_INT32: FILL_LOOP(int32_t, one ? 1 : top ? INT32_MAX : INT32_MIN); break;
    case HERD_INT64: FILL_LOOP(int64_t, one ? 1 : top ? INT64_MAX : INT64_MIN); break;
    case HERD_FLOAT32: FILL_LOOP(float, one ? 1.0f : top ? INFINITY : -INFINITY); break;
    case HERD_FLOAT64: FILL_LOOP(double, one ? 1.0 : top ? INFINITY : -INFINITY); break;
    case HERD_FLOAT16: FILL_LOOP(uint16_t, one ? 0x3c00u : top ? 0x7c00u : 0xfc00u); break;
    case HERD_BFLOAT16: FILL_LOOP(uint16_t, one ? 0x3f80u : top ? 0x7f80u : 0xff80u); break;
    default: break;
    }
}

int herd_dtype_size(int dtype)
{
    return herd__dtype_valid(dtype) ? (int)dtype_sizes[dtype] : HERD_ERR_INVALID_ARG;
}
