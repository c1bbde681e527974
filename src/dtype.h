/* dtype.h - element types: sizes, names, half-precision conversion and the element loops the
 * MPI backend cannot get from MPI itself (fp16/bf16 reductions, average's division). Pure. */
#ifndef HERD_DTYPE_H
#define HERD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "herd.h"

enum { HERD_NUM_DTYPES = 8, HERD_NUM_OPS = 5 };

/* 1 if `dtype` is one of herd's dtypes. */
int herd__dtype_valid(int dtype);
int herd__op_valid(int op);

/* Bytes per element; 0 for an unknown dtype. */
size_t herd__dtype_size(int dtype);
const char *herd__dtype_name(int dtype);
const char *herd__op_name(int op);

float herd__fp16_to_float(uint16_t h);
uint16_t herd__float_to_fp16(float f); /* round to nearest, ties to even */
float herd__bf16_to_float(uint16_t b);
uint16_t herd__float_to_bf16(float f); /* round to nearest, ties to even */

/* inout[i] = inout[i] (op) in[i] for fp16 or bf16: each pair is combined in float32 and
 * rounded back. `op` is SUM, MIN, MAX or PRODUCT. */
void herd__half_combine(int dtype, int op, const uint16_t *in, uint16_t *inout, size_t count);

/* buf[i] /= divisor, for average. Integers truncate toward zero; floats divide in their own
 * precision (fp16/bf16 in float32, then rounded). */
void herd__dtype_divide(int dtype, void *buf, size_t count, int divisor);

/* dst[i] = src[i] * factor (dst == src allowed), in the dtype's working precision: float32 for
 * float32, float16 and bfloat16 (then rounded to nearest even), float64 for float64; integers
 * in float64, truncated toward zero. */
void herd__dtype_scale_copy(int dtype, void *dst, const void *src, size_t count, double factor);

/* The last pass of a reduction: buf[i] = buf[i] / divisor * postscale, skipping the division
 * when divisor is 1 and the multiplication when postscale is 1 (integers: the division
 * truncates, as herd__dtype_divide, then the scaling as herd__dtype_scale_copy). */
void herd__dtype_finish(int dtype, void *buf, size_t count, int divisor, double postscale);

/* Fills buf with the identity of `op` (SUM/AVERAGE 0, PRODUCT 1, MIN the dtype's largest value
 * or +inf, MAX its smallest or -inf): what a rank that has joined contributes. */
void herd__dtype_fill_identity(int dtype, int op, void *buf, size_t count);

#endif
