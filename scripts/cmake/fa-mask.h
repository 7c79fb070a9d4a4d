// One row of a tile of flash attention's mask, read eight values at a time on x86 with
// AVX and F16C: orion_fa_mask_row in scripts/cmake/ggml-ops.cpp (see there), checked
// against ggml's loop by sgemm-packed-check.cpp.
//
// dst[t] = slope * f16 src[t] for t < n, as ggml's loop computes it (the same conversion
// instruction, the same product); returns whether any is not -inf, NaN included, as
// ggml's != has it. `to_f32` converts the values the vectors leave (ggml's conversion).
#pragma once

#if defined(__AVX__) && defined(__F16C__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdint>

template <typename ToF32>
static inline bool orion_fa_mask_row_with(const uint16_t * src, float * dst, int n, float slope, ToF32 to_f32) {
    bool kept = false;
    int t = 0;
#if defined(__AVX__) && defined(__F16C__)
    const __m256 s = _mm256_set1_ps(slope), none = _mm256_set1_ps(-INFINITY);
    __m256 seen = _mm256_setzero_ps();
    for (; t + 8 <= n; t += 8) {
        const __m256 v = _mm256_mul_ps(s, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (src + t))));
        _mm256_storeu_ps(dst + t, v);
        seen = _mm256_or_ps(seen, _mm256_cmp_ps(v, none, _CMP_NEQ_UQ));
    }
    kept = _mm256_movemask_ps(seen) != 0;
#endif
    for (; t < n; t++) {
        dst[t] = slope * to_f32(src[t]);
        kept |= dst[t] != -INFINITY;
    }
    return kept;
}
