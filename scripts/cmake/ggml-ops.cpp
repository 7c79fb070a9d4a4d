// Compiled into each of ggml's CPU variants in place of ggml-cpu/ops.cpp (see ggml.cmake):
// that file, whole, with GELU computed in vectors on x86.
//
// ggml computes GELU (the activation of BERT-style embedding models and rerankers) one
// element at a time through a table of 65536 f16 results, rounding each input to f16:
// 7 % of the time of an all-MiniLM-L6-v2 batch, measured. The same tanh approximation in
// vectors, x * sigmoid(2u) = x / (1 + exp(-2u)) with u = sqrt(2/pi) (x + 0.044715 x^3)
// and ggml's own vector exp, is faster and exacter (no f16 rounding).
//
// vec.h is included first with ggml's function renamed; its `#pragma once` keeps
// ops.cpp's own include from defining it again, so ops.cpp calls the one below.
#define ggml_vec_gelu_f32 ggml_vec_gelu_f32_table
#include "vec.h"
#undef ggml_vec_gelu_f32

#if defined(__AVX512F__) && defined(__AVX512DQ__)
inline static void ggml_vec_gelu_f32(const int n, float * y, const float * x) {
    const __m512 c = _mm512_set1_ps(-2.0f * SQRT_2_OVER_PI), a = _mm512_set1_ps(GELU_COEF_A), one = _mm512_set1_ps(1.0f);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512 t = _mm512_mul_ps(_mm512_mul_ps(c, v), _mm512_fmadd_ps(_mm512_mul_ps(a, v), v, one));  // -2u
        _mm512_storeu_ps(y + i, _mm512_div_ps(v, _mm512_add_ps(one, ggml_v_expf(t))));
    }
    ggml_vec_gelu_f32_table(n - i, y + i, x + i);
}
#elif defined(__AVX2__) && defined(__FMA__)
inline static void ggml_vec_gelu_f32(const int n, float * y, const float * x) {
    const __m256 c = _mm256_set1_ps(-2.0f * SQRT_2_OVER_PI), a = _mm256_set1_ps(GELU_COEF_A), one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 t = _mm256_mul_ps(_mm256_mul_ps(c, v), _mm256_fmadd_ps(_mm256_mul_ps(a, v), v, one));  // -2u
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, ggml_v_expf(t))));
    }
    ggml_vec_gelu_f32_table(n - i, y + i, x + i);
}
#else
inline static void ggml_vec_gelu_f32(const int n, float * y, const float * x) { ggml_vec_gelu_f32_table(n, y, x); }
#endif

#include "ops.cpp"
