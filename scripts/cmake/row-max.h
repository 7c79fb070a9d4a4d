// The largest of a row of floats, in vectors on x86 with AVX2 or AVX-512: ggml_vec_max_f32
// in scripts/cmake/ggml-ops.cpp, checked against ggml's loop by sgemm-packed-check.cpp.
//
// ggml takes the largest one element at a time, each comparison waiting for the last
// (softmax's first step, and flash attention's for each query and tile of 64 keys): flash
// attention spent 39 % of its time there, reranking 100 documents of 100 to 300 tokens
// with all-MiniLM-L6-v2's f16 twin on 2 threads with AVX-512 (perf). Each lane compares
// as ggml's MAX(max, x) does (x unless max > x), and a maximum does not depend on the
// order of the comparisons: the same largest value as ggml's loop for any row without NaN.
#pragma once

#include <immintrin.h>

#include <cmath>

namespace orion_row_max {

#if defined(__AVX512F__)
using vec = __m512;
constexpr int VL = 16;
static inline vec vload(const float * p) { return _mm512_loadu_ps(p); }
static inline vec vmax(vec a, vec b) { return _mm512_max_ps(a, b); }
static inline float hmax(vec v) { return _mm512_reduce_max_ps(v); }
#else
using vec = __m256;
constexpr int VL = 8;
static inline vec vload(const float * p) { return _mm256_loadu_ps(p); }
static inline vec vmax(vec a, vec b) { return _mm256_max_ps(a, b); }
static inline float hmax(vec v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
#endif

static inline float row_max(int n, const float * x) {
    float max = -INFINITY;
    int i = 0;
    if (n >= 2 * VL) {
        // Two chains of comparisons, so that each waits less for the last.
        vec m0 = vload(x), m1 = vload(x + VL);
        for (i = 2 * VL; i + 2 * VL <= n; i += 2 * VL) {
            m0 = vmax(m0, vload(x + i));
            m1 = vmax(m1, vload(x + i + VL));
        }
        max = hmax(vmax(m0, m1));
    }
    for (; i < n; ++i) {
        max = max > x[i] ? max : x[i];
    }
    return max;
}

}  // namespace orion_row_max
