// Compiled into each of ggml's CPU variants in place of ggml-cpu/ops.cpp (see ggml.cmake):
// that file, whole, with GELU, the largest of a row (row-max.h) and flash attention's mask
// tiles computed in vectors on x86.
//
// ggml computes GELU (the activation of BERT-style embedding models and rerankers) one
// element at a time through a table of 65536 f16 results, rounding each input to f16:
// 7 % of the time of an all-MiniLM-L6-v2 batch, measured. The same tanh approximation in
// vectors, x * sigmoid(2u) = x / (1 + exp(-2u)) with u = sqrt(2/pi) (x + 0.044715 x^3)
// and ggml's own vector exp, is faster and exacter (no f16 rounding).
//
// vec.h is included first with ggml's functions renamed; its `#pragma once` keeps
// ops.cpp's own include from defining them again, so ops.cpp calls the ones below.
#define ggml_vec_gelu_f32 ggml_vec_gelu_f32_table
#define ggml_vec_max_f32 ggml_vec_max_f32_loop
#include "vec.h"
#undef ggml_vec_gelu_f32
#undef ggml_vec_max_f32

#if defined(__AVX2__) || defined(__AVX512F__)
#include "row-max.h"
inline static void ggml_vec_max_f32(const int n, float * s, const float * x) { *s = orion_row_max::row_max(n, x); }
#else
inline static void ggml_vec_max_f32(const int n, float * s, const float * x) { ggml_vec_max_f32_loop(n, s, x); }
#endif

// One body for both vector widths, through these few wrappers (as sgemm-packed.h does).
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define ORION_GELU_VECTORS 1
using gelu_vec = __m512;
constexpr int GELU_VL = 16;
static inline gelu_vec gelu_set1(float f) { return _mm512_set1_ps(f); }
static inline gelu_vec gelu_load(const float * p) { return _mm512_loadu_ps(p); }
static inline void gelu_store(float * p, gelu_vec v) { _mm512_storeu_ps(p, v); }
static inline gelu_vec gelu_mul(gelu_vec a, gelu_vec b) { return _mm512_mul_ps(a, b); }
static inline gelu_vec gelu_add(gelu_vec a, gelu_vec b) { return _mm512_add_ps(a, b); }
static inline gelu_vec gelu_div(gelu_vec a, gelu_vec b) { return _mm512_div_ps(a, b); }
static inline gelu_vec gelu_fma(gelu_vec a, gelu_vec b, gelu_vec c) { return _mm512_fmadd_ps(a, b, c); }
#elif defined(__AVX2__) && defined(__FMA__)
#define ORION_GELU_VECTORS 1
using gelu_vec = __m256;
constexpr int GELU_VL = 8;
static inline gelu_vec gelu_set1(float f) { return _mm256_set1_ps(f); }
static inline gelu_vec gelu_load(const float * p) { return _mm256_loadu_ps(p); }
static inline void gelu_store(float * p, gelu_vec v) { _mm256_storeu_ps(p, v); }
static inline gelu_vec gelu_mul(gelu_vec a, gelu_vec b) { return _mm256_mul_ps(a, b); }
static inline gelu_vec gelu_add(gelu_vec a, gelu_vec b) { return _mm256_add_ps(a, b); }
static inline gelu_vec gelu_div(gelu_vec a, gelu_vec b) { return _mm256_div_ps(a, b); }
static inline gelu_vec gelu_fma(gelu_vec a, gelu_vec b, gelu_vec c) { return _mm256_fmadd_ps(a, b, c); }
#endif

#ifdef ORION_GELU_VECTORS
inline static void ggml_vec_gelu_f32(const int n, float * y, const float * x) {
    const gelu_vec c = gelu_set1(-2.0f * SQRT_2_OVER_PI), a = gelu_set1(GELU_COEF_A), one = gelu_set1(1.0f);
    int i = 0;
    for (; i + GELU_VL <= n; i += GELU_VL) {
        const gelu_vec v = gelu_load(x + i);
        const gelu_vec t = gelu_mul(gelu_mul(c, v), gelu_fma(gelu_mul(a, v), v, one));  // -2u
        gelu_store(y + i, gelu_div(v, gelu_add(one, ggml_v_expf(t))));
    }
    ggml_vec_gelu_f32_table(n - i, y + i, x + i);
}
#else
inline static void ggml_vec_gelu_f32(const int n, float * y, const float * x) { ggml_vec_gelu_f32_table(n, y, x); }
#endif

// Flash attention's tiled form (64 queries or more) reads the mask one tile of 64 x 64
// at a time, to skip tiles that mask out every key, as they mostly are in a batch of
// several texts: ggml converts and tests it one value at a time, 22 % of flash
// attention's time when reranking (perf, after the row maximum above). The same values,
// eight at a time, from the copy of ops.cpp that ggml.cmake makes with this call in place
// of that loop (fa-mask.h).
#include "fa-mask.h"
static inline bool orion_fa_mask_row(const ggml_fp16_t * src, float * dst, int n, float slope) {
    return orion_fa_mask_row_with(src, dst, n, slope, [](ggml_fp16_t h) { return GGML_CPU_FP16_TO_FP32(h); });
}

#ifndef ORION_OPS_CPP
#error "ORION_OPS_CPP names the copy of ops.cpp to include: set by scripts/cmake/ggml.cmake"
#endif
#include ORION_OPS_CPP
