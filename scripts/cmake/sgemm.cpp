// Compiled into each of ggml's CPU variants in place of llamafile/sgemm.cpp (see
// ggml.cmake): that file, whole, plus two kinds of products on x86.
//
// Many tokens at once (n >= 32: a batch of texts to embed, a prompt; q8_0 without VNNI
// from 16) with f32, f16, bf16 or q8_0 weights: packed products, as BLAS libraries do them
// (sgemm-packed.h), 12-30 % faster than tinyBLAS's on all-MiniLM-L6-v2's batches of 32
// texts, measured.
//
// Fewer tokens, f16 or bf16 weights: llama.cpp's matrix products (llamafile's tinyBLAS)
// take them on x86 only when the activations are in the same type: ggml first rounds the
// activations to f16 or bf16, and the kernel widens both operands back to f32 for every
// product. Taking the f32 activations as they are saves that rounding pass and half of
// the kernel's conversions, and the products are at least as exact. ARM already has this
// path (f16 weights, f32 activations) in llama.cpp.
//
// Where the CPU multiplies int8 pairs itself (VNNI), llama.cpp's own q8_0 kernel is as fast
// and is kept. So is its bf16 kernel where the CPU multiplies bf16 pairs (AVX-512 BF16), but
// on AMD's Zen 4 only (ggml's zen4 build), where that instruction does twice the work of an
// f32 FMA in the same time. Intel's Sapphire Rapids runs it at the FMA's rate, and there
// ours were faster, measured on a 2-core Xeon (2026-12-06; all-MiniLM-L6-v2's bf16 twin):
// single texts 270 -> 312-326 texts/s, batches of 32 305-312 -> 426-433. The build for those
// CPUs is the one with AMX (ORION_OWN_BF16 below); Cooper Lake's, with AVX-512 BF16 and no
// AMX, keeps llama.cpp's (not measured).
#define llamafile_sgemm llamafile_sgemm_upstream
#include "llamafile/sgemm.cpp"
#undef llamafile_sgemm

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "sgemm-packed.h"
#define ORION_PACKED 1
#endif

#if !defined(__AVX512BF16__) || defined(__AMX_TILE__)
#define ORION_OWN_BF16 1
#endif

extern "C" bool llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n,
                                int64_t k, const void * A, int64_t lda, const void * B,
                                int64_t ldb, void * C, int64_t ldc, int Atype, int Btype,
                                int Ctype) {
#if defined(ORION_PACKED)
    // Many tokens (a batch of texts to embed, a prompt) against a weight matrix: packed
    // products (sgemm-packed.h). Not the products inside attention, whose rows are few or short.
    const int64_t weights = Atype == GGML_TYPE_Q8_0 ? k * 32 : k;  // k counts q8_0's blocks of 32
#if !defined(__AVX512VNNI__) && !defined(__AVXVNNI__)
    // q8_0 from 16 tokens: below 32, llama.cpp's kernel first rounds the activations to
    // 8 bits, all threads then meet at a barrier, and its int8 products are not much faster
    // than f32 ones without VNNI. Measured with all-MiniLM-L6-v2's q8_0 twin, single texts
    // (AVX2 level, 2 cores, 2026-12-06): 17 tokens 5 % faster, 21 10 %, 25 19 %, 29 25 %;
    // 13 tokens 5 % slower, 6 12 % (copying the weights then costs more than it saves).
    // f16 and bf16 gained too little below 32 to move theirs (-3 to +12 %, -16 to 0 %).
    const int64_t min_tokens = Atype == GGML_TYPE_Q8_0 ? 16 : orion_packed::MIN_TOKENS;
#else
    const int64_t min_tokens = orion_packed::MIN_TOKENS;
#endif
    if (n >= min_tokens && m >= orion_packed::NR && weights >= 64 && Btype == GGML_TYPE_F32 &&
        Ctype == GGML_TYPE_F32) {
        using orion_packed::Weights;
        const int ith = params->ith, nth = params->nth;
        switch (Atype) {
            case GGML_TYPE_F32:
                orion_packed::gemm<Weights::F32>(ith, nth, m, n, k, A, lda, (const float *) B, ldb, (float *) C, ldc);
                return true;
            case GGML_TYPE_F16:
                orion_packed::gemm<Weights::F16>(ith, nth, m, n, k, A, lda, (const float *) B, ldb, (float *) C, ldc);
                return true;
#if defined(ORION_OWN_BF16)
            case GGML_TYPE_BF16:
                orion_packed::gemm<Weights::BF16>(ith, nth, m, n, k, A, lda, (const float *) B, ldb, (float *) C, ldc);
                return true;
#endif
#if !defined(__AVX512VNNI__) && !defined(__AVXVNNI__)
            // Where the CPU multiplies int8 pairs itself (VNNI), llama.cpp's q8_0 kernel is as
            // fast, measured; without, the packed products are faster, and exact where that
            // kernel rounds the activations to 8 bits.
            case GGML_TYPE_Q8_0:
                orion_packed::gemm<Weights::Q8_0>(ith, nth, m, n, weights, A, lda, (const float *) B, ldb, (float *) C, ldc);
                return true;
#endif
            default:
                break;
        }
    }
#endif
#if defined(__AVX__) || defined(__AVX2__) || defined(__AVX512F__)
    // As upstream: one-token products (generation) go to ggml's dot products.
    if (n >= 2 && Btype == GGML_TYPE_F32 && Ctype == GGML_TYPE_F32) {
#if defined(__AVX512F__)
        if (Atype == GGML_TYPE_F16) {
            tinyBLAS<16, __m512, __m512, ggml_fp16_t, float, float> tb{
                params, k, (const ggml_fp16_t *) A, lda, (const float *) B, ldb, (float *) C, ldc
            };
            return tb.matmul(m, n);
        }
#if defined(ORION_OWN_BF16)
        if (Atype == GGML_TYPE_BF16) {
            tinyBLAS<16, __m512, __m512, ggml_bf16_t, float, float> tb{
                params, k, (const ggml_bf16_t *) A, lda, (const float *) B, ldb, (float *) C, ldc
            };
            return tb.matmul(m, n);
        }
#endif
#else
#if defined(__F16C__)
        if (Atype == GGML_TYPE_F16) {
            tinyBLAS<8, __m256, __m256, ggml_fp16_t, float, float> tb{
                params, k, (const ggml_fp16_t *) A, lda, (const float *) B, ldb, (float *) C, ldc
            };
            return tb.matmul(m, n);
        }
#endif
#if defined(__AVX2__)
        if (Atype == GGML_TYPE_BF16) {
            tinyBLAS<8, __m256, __m256, ggml_bf16_t, float, float> tb{
                params, k, (const ggml_bf16_t *) A, lda, (const float *) B, ldb, (float *) C, ldc
            };
            return tb.matmul(m, n);
        }
#endif
#endif
    }
#endif
    return llamafile_sgemm_upstream(params, m, n, k, A, lda, B, ldb, C, ldc, Atype, Btype, Ctype);
}
