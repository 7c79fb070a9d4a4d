// Compiled into each of ggml's CPU variants in place of ggml-cpu/amx/mmq.cpp (see
// ggml.cmake): that file, whole, with its AMX tile configuration actually written.
//
// ggml configures the AMX tiles from a struct on the stack (ggml_tile_config_init), with
// the compiler's _tile_loadconfig. GCC 12's (Debian 12's, and its MinGW-w64's) declares
// that it reads only the struct's first 8 bytes, so the optimiser drops the stores of
// the tiles' rows and columns: the tiles load unconfigured and the first tile
// instruction is illegal (SIGILL), or, where the configuration's last bytes held stack
// garbage, loading it faults (SIGSEGV; llama-server built with -march=native, seen).
// Every q8_0, q4_0, q4_K... model crashed the process on a CPU with AMX (Sapphire Rapids
// and later, in ggml's sapphirerapids build), given more than one token at once: seen.
// The same instruction, declared as reading all 64 bytes, keeps the stores.
// (llama.cpp's pull request 26954 moves the struct out of the stack for the same crash.)
// (Compiled into every CPU level, Arm's too; only those built with AMX have tiles.)
#if defined(__AMX_TILE__) && defined(__x86_64__)
#include <immintrin.h>

static inline void orion_tile_loadconfig(const void * config) {
    __asm__ volatile("ldtilecfg\t%X0" ::"m"(*(const unsigned char (*)[64]) config) : "memory");
}
#define _tile_loadconfig orion_tile_loadconfig
#endif

// f16 weights: ggml's AMX buffer takes them too, and multiplies them with AVX-512 dot
// products four weight rows by six tokens at a time. llamafile_sgemm (scripts/cmake/
// sgemm.cpp: packed products for many tokens, f32 activations taken as they are for
// few) is what they get on every other CPU; they get it here too.
#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)  // mmq.cpp's own condition
#define ORION_AMX_F16 1
#define ggml_backend_amx_mul_mat ggml_backend_amx_mul_mat_upstream
#endif
#include "amx/mmq.cpp"
#if defined(ORION_AMX_F16)
#undef ggml_backend_amx_mul_mat
#include "llamafile/sgemm.h"

void ggml_backend_amx_mul_mat(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    const ggml_tensor * src0 = dst->src[0];
    const ggml_tensor * src1 = dst->src[1];
    if (src0->type == GGML_TYPE_F16 && src1->type == GGML_TYPE_F32 && dst->type == GGML_TYPE_F32 &&
        ggml_is_contiguous(src1)) {
        const int64_t r2 = src1->ne[2] / src0->ne[2], r3 = src1->ne[3] / src0->ne[3];
        bool done = true;
        for (int64_t i13 = 0; done && i13 < src1->ne[3]; i13++) {
            for (int64_t i12 = 0; done && i12 < src1->ne[2]; i12++) {
                done = llamafile_sgemm(params, src0->ne[1], src1->ne[1], src0->ne[0],
                                       (const char *) src0->data + i12 / r2 * src0->nb[2] + i13 / r3 * src0->nb[3],
                                       src0->nb[1] / ggml_type_size(src0->type),
                                       (const char *) src1->data + i12 * src1->nb[2] + i13 * src1->nb[3],
                                       src1->nb[1] / ggml_type_size(src1->type),
                                       (char *) dst->data + i12 * dst->nb[2] + i13 * dst->nb[3],
                                       dst->nb[1] / ggml_type_size(dst->type), src0->type, src1->type, dst->type);
            }
        }
        if (done) {
            return;
        }
    }
    ggml_backend_amx_mul_mat_upstream(params, dst);
}
#endif
