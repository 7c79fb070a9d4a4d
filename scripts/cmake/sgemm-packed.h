// Packed f32 matrix products for many tokens at once, and for any number against weights
// packed at load (prepack, gemm_prepacked, at the end), on x86 with AVX2+FMA+F16C or
// AVX-512: included by sgemm.cpp and ggml-repack.cpp, and by
// scripts/cmake/sgemm-packed-check.cpp, which checks it against a plain loop.
//
// tinyBLAS (llamafile's kernels, which llama.cpp uses) computes each output as a dot
// product: it widens every weight it loads, again for every group of tokens, and ends
// each output with a horizontal sum. For a batch of many tokens, the way BLAS libraries
// do it is faster (ONNX Runtime's MLAS, OpenBLAS, BLIS): copy a panel of weight rows,
// widened to f32 once, into a small buffer laid out k-major, then multiply it with the
// tokens as outer products, one broadcast activation against two vectors of weights, with
// the outputs in registers for the whole panel. Measured on MiniLM-L6 (batches of 32
// texts): the llama.cpp engine's matrix products took about 20 % longer than MLAS's; this
// is what ONNX Runtime runs, and it closes that gap.
//
// C[j*ldc + i] = sum over l of A[i*lda + l] * B[j*ldb + l], for i < m weight rows, j < n
// tokens, l < k: the layout of llamafile_sgemm's arguments.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <cstdint>
#include <cstring>

namespace orion_packed {

#if defined(__AVX512F__)
using vec = __m512;
constexpr int VL = 16;  // floats per vector
constexpr int MR = 12;  // tokens per kernel call: 24 accumulators, 2 weight vectors, 1 broadcast
static inline vec vzero() { return _mm512_setzero_ps(); }
static inline vec vload(const float * p) { return _mm512_loadu_ps(p); }
static inline void vstore(float * p, vec v) { _mm512_storeu_ps(p, v); }
static inline vec vbroadcast(const float * p) { return _mm512_set1_ps(*p); }
static inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
#else
using vec = __m256;
constexpr int VL = 8;
constexpr int MR = 6;  // 12 accumulators, 2 weight vectors, 1 broadcast: 15 of 16 registers
static inline vec vzero() { return _mm256_setzero_ps(); }
static inline vec vload(const float * p) { return _mm256_loadu_ps(p); }
static inline void vstore(float * p, vec v) { _mm256_storeu_ps(p, v); }
static inline vec vbroadcast(const float * p) { return _mm256_broadcast_ss(p); }
static inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
#endif

constexpr int NR = 2 * VL;       // weight rows per panel
constexpr int KC = 4096 / NR;    // k per packed block: 16 KiB, which stays in L1
constexpr int64_t MIN_TOKENS = 32;  // below this, tinyBLAS (no copy) is as fast (q8_0 without VNNI: 16, sgemm.cpp)

enum class Weights { F32, F16, BF16, Q8_0 };

// ggml's block_q8_0: 32 weights, int8, with one f16 scale. A row of k weights is k/32
// blocks, and its stride (lda) counts blocks.
struct q8_0_block {
    uint16_t d;
    int8_t qs[32];
};
static_assert(sizeof(q8_0_block) == 34, "block_q8_0's layout");

// Eight consecutive weights of one row, widened; zeros past the row's end. k counts
// weights.
template <Weights W>
static inline __m256 load8(const void * A, int64_t lda, int64_t row, int64_t l, int64_t k) {
    if constexpr (W == Weights::Q8_0) {
        // l is a multiple of 8 and k of 32: eight weights never straddle two blocks.
        const q8_0_block & b = ((const q8_0_block *) A)[row * lda + l / 32];
        const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) (b.qs + l % 32))));
        return _mm256_mul_ps(q, _mm256_set1_ps(_cvtsh_ss(b.d)));
    }
    if (l + 8 <= k) {
        if constexpr (W == Weights::F32) {
            return _mm256_loadu_ps((const float *) A + row * lda + l);
        } else {
            __m128i h = _mm_loadu_si128((const __m128i *) ((const uint16_t *) A + row * lda + l));
            if constexpr (W == Weights::F16) {
                return _mm256_cvtph_ps(h);
            } else {
                return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            }
        }
    }
    alignas(32) float tail[8] = { 0 };
    for (int64_t t = 0; l + t < k; ++t) {
        if constexpr (W == Weights::F32) {
            tail[t] = ((const float *) A)[row * lda + l + t];
        } else {
            uint16_t v = ((const uint16_t *) A)[row * lda + l + t];
            if constexpr (W == Weights::F16) {
                tail[t] = _cvtsh_ss(v);
            } else {
                uint32_t bits = (uint32_t) v << 16;
                std::memcpy(&tail[t], &bits, 4);
            }
        }
    }
    return _mm256_load_ps(tail);
}

static inline void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// P[l*NR + r] = A[(i0 + r)*lda + l0 + l] widened, for r < NR (zeros past row m) and
// l < kc, eight rows by eight columns at a time.
template <Weights W>
static void pack(float * P, const void * A, int64_t lda, int64_t i0, int64_t m, int64_t l0, int64_t kc, int64_t k) {
    for (int r0 = 0; r0 < NR; r0 += 8) {
        for (int64_t l = 0; l < kc; l += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; ++t) {
                r[t] = i0 + r0 + t < m ? load8<W>(A, lda, i0 + r0 + t, l0 + l, k) : _mm256_setzero_ps();
            }
            transpose8(r);
            for (int t = 0; t < 8 && l + t < kc; ++t) {
                _mm256_store_ps(P + (l + t) * NR + r0, r[t]);
            }
        }
    }
}

// A vector of weights from a packed panel: f32 as packed, or f16/bf16 widened here (a panel
// prepacked at load keeps the file's type: half the bytes to stream for each text).
template <Weights PW>
static inline vec pload(const void * P, int64_t at) {
    if constexpr (PW == Weights::F32) {
        return vload((const float *) P + at);
    } else {
#if defined(__AVX512F__)
        const __m256i h = _mm256_loadu_si256((const __m256i *) ((const uint16_t *) P + at));
        if constexpr (PW == Weights::F16) {
            return _mm512_cvtph_ps(h);
        } else {
            return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        }
#else
        const __m128i h = _mm_loadu_si128((const __m128i *) ((const uint16_t *) P + at));
        if constexpr (PW == Weights::F16) {
            return _mm256_cvtph_ps(h);
        } else {
            return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
#endif
    }
}

// R tokens (R <= MR) against one packed block: C rows j..j+R-1, columns i0..i0+cols-1,
// added to what is there unless `first`. P is laid out P[l*NR + r], in PW's type.
template <int R, Weights PW = Weights::F32>
static inline void kernel(const void * P, const float * B, int64_t ldb, int64_t kc, float * C, int64_t ldc,
                          bool first, int cols) {
    vec acc[R][2];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
        acc[r][0] = vzero();
        acc[r][1] = vzero();
    }
    for (int64_t l = 0; l < kc; ++l) {
        const vec w0 = pload<PW>(P, l * NR);
        const vec w1 = pload<PW>(P, l * NR + VL);
#pragma GCC unroll 12
        for (int r = 0; r < R; ++r) {
            const vec a = vbroadcast(B + r * ldb + l);
            acc[r][0] = vfma(a, w0, acc[r][0]);
            acc[r][1] = vfma(a, w1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
        float * c = C + r * ldc;
        if (cols == NR) {
            if (!first) {
                acc[r][0] = vadd(acc[r][0], vload(c));
                acc[r][1] = vadd(acc[r][1], vload(c + VL));
            }
            vstore(c, acc[r][0]);
            vstore(c + VL, acc[r][1]);
        } else {
            alignas(64) float out[NR];
            vstore(out, acc[r][0]);
            vstore(out + VL, acc[r][1]);
            for (int i = 0; i < cols; ++i) {
                c[i] = first ? out[i] : c[i] + out[i];
            }
        }
    }
}

template <int R, Weights PW = Weights::F32>
static inline void kernel_upto(int rows, const void * P, const float * B, int64_t ldb, int64_t kc, float * C,
                               int64_t ldc, bool first, int cols) {
    if constexpr (R > 1) {
        if (rows < R) {
            kernel_upto<R - 1, PW>(rows, P, B, ldb, kc, C, ldc, first, cols);
            return;
        }
    }
    kernel<R, PW>(P, B, ldb, kc, C, ldc, first, cols);
}

// Thread `ith` of `nth` computes its share: panels of NR weight rows, each split by
// tokens where there are fewer panels than threads. No synchronisation: every share
// writes its own outputs.
template <Weights W>
static void gemm(int ith, int nth, int64_t m, int64_t n, int64_t k, const void * A, int64_t lda, const float * B,
                 int64_t ldb, float * C, int64_t ldc) {
    const int64_t panels = (m + NR - 1) / NR;
    const int64_t token_blocks = (n + MR - 1) / MR;
    const int64_t splits = std::min<int64_t>(token_blocks, std::max<int64_t>(1, (4 * nth + panels - 1) / panels));
    const int64_t jobs = panels * splits;
    const int64_t begin = jobs * ith / nth, end = jobs * (ith + 1) / nth;
    alignas(64) float P[KC * NR];
    for (int64_t job = begin; job < end; ++job) {
        const int64_t panel = job / splits, split = job % splits;
        const int64_t i0 = panel * NR;
        const int cols = (int) std::min<int64_t>(NR, m - i0);
        const int64_t j_begin = token_blocks * split / splits * MR;
        const int64_t j_end = std::min<int64_t>(n, token_blocks * (split + 1) / splits * MR);
        for (int64_t l0 = 0; l0 < k; l0 += KC) {
            const int64_t kc = std::min<int64_t>(KC, k - l0);
            pack<W>(P, A, lda, i0, m, l0, kc, k);
            for (int64_t j = j_begin; j < j_end; j += MR) {
                kernel_upto<MR>((int) std::min<int64_t>(MR, j_end - j), P, B + j * ldb + l0, ldb, kc,
                                C + j * ldc + i0, ldc, l0 == 0, cols);
            }
        }
    }
}

// Weights packed once, when the model loads (ggml-repack.cpp), for products of few tokens:
// a text embedded alone has 5 to 30, too few for a copy per product to pay for itself
// (gemm above: from 32), yet tinyBLAS's dot products spend a horizontal sum per output
// and the copy would not. W is F32, F16 or BF16; the panels keep W's type. m is a
// multiple of NR: the packed weights fill exactly the bytes of the rows they came from.
//
// Panel p holds rows p*NR..p*NR+NR-1 as PK[p*k*NR + l*NR + r].
template <Weights W>
static void prepack(void * PK, const void * A, int64_t m, int64_t k) {
    using T = std::conditional_t<W == Weights::F32, float, uint16_t>;
    const T * a = (const T *) A;
    T * p = (T *) PK;
    for (int64_t i0 = 0; i0 < m; i0 += NR)
        for (int64_t l = 0; l < k; ++l)
            for (int r = 0; r < NR; ++r) p[i0 * k + l * NR + r] = a[(i0 + r) * k + l];
}

// C[j*ldc + i] = sum over l of A[i][l] * B[j*ldb + l] with A prepacked above, for thread
// `ith` of `nth`: panels split between threads, and each panel's tokens too where there
// are fewer panels than threads. No synchronisation: every share writes its own outputs.
template <Weights W>
static void gemm_prepacked(int ith, int nth, int64_t m, int64_t n, int64_t k, const void * PK, const float * B,
                           int64_t ldb, float * C, int64_t ldc) {
    constexpr int64_t bytes = W == Weights::F32 ? 4 : 2;
    const int64_t panels = m / NR;
    const int64_t token_blocks = (n + MR - 1) / MR;
    const int64_t splits = std::min<int64_t>(token_blocks, std::max<int64_t>(1, (nth + panels - 1) / panels));
    const int64_t jobs = panels * splits;
    const int64_t begin = jobs * ith / nth, end = jobs * (ith + 1) / nth;
    for (int64_t job = begin; job < end; ++job) {
        const int64_t panel = job / splits, split = job % splits;
        const char * P = (const char *) PK + panel * k * NR * bytes;
        const int64_t j_begin = token_blocks * split / splits * MR;
        const int64_t j_end = std::min<int64_t>(n, token_blocks * (split + 1) / splits * MR);
        // k in blocks that keep the panel's part and the tokens' in L1 across token blocks.
        for (int64_t l0 = 0; l0 < k; l0 += KC) {
            const int64_t kc = std::min<int64_t>(KC, k - l0);
            for (int64_t j = j_begin; j < j_end; j += MR) {
                kernel_upto<MR, W>((int) std::min<int64_t>(MR, j_end - j), P + l0 * NR * bytes, B + j * ldb + l0, ldb,
                                   kc, C + j * ldc + panel * NR, ldc, l0 == 0, NR);
            }
        }
    }
}

}  // namespace orion_packed
