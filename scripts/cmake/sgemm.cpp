// Compiled into each of ggml's CPU variants in place of llamafile/sgemm.cpp (see
// ggml.cmake): that file, whole, plus products of f16 and bf16 weights with f32
// activations on x86.
//
// llama.cpp's matrix products (llamafile's tinyBLAS) take f16 or bf16 weights on x86 only
// when the activations are in the same type: ggml first rounds the activations to f16 or
// bf16, and the kernel widens both operands back to f32 for every product. Taking the f32
// activations as they are saves that rounding pass and half of the kernel's conversions,
// and the products are at least as exact. Where the CPU multiplies bf16 pairs itself
// (AVX-512 BF16), llama.cpp's own bf16 kernel stays faster and is kept. ARM already has
// this path (f16 weights, f32 activations) in llama.cpp.
#define llamafile_sgemm llamafile_sgemm_upstream
#include "llamafile/sgemm.cpp"
#undef llamafile_sgemm

extern "C" bool llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n,
                                int64_t k, const void * A, int64_t lda, const void * B,
                                int64_t ldb, void * C, int64_t ldc, int Atype, int Btype,
                                int Ctype) {
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
#if !defined(__AVX512BF16__)
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
