// Compiled into each of ggml's CPU variants in place of ggml-cpu/repack.cpp (see ggml.cmake):
// that file, whole, plus one more kind of repacked weights, on x86 with AVX2 or AVX-512:
// f32, f16 and bf16 matrices packed at load for sgemm-packed.h's products.
//
// A text embedded alone has 5 to 30 tokens. For so few, llama.cpp's matrix products
// (tinyBLAS) compute each output as a dot product and end it with a horizontal sum, and
// copying the weights into panels for every product (sgemm.cpp, from 32 tokens) costs about
// what the panels save. Packed once, when the model loads, the panels cost nothing per
// text: ggml's "repack" buffer (CPU_REPACK, which llama.cpp already uses for q4_0 and q4_K
// weights on AVX2) holds them, in the file's own type and size, and its matrix products
// come here. Measured with all-MiniLM-L6-v2's GGUF twins, single texts, on a 2-core Xeon
// (2026-12-06), texts/s before -> after, the ONNX engine about 300 (AVX2) and 350-370:
// - ggml's Haswell build (AVX2): f16 223-226 -> 230-237, bf16 229-236 -> 248-253, f32
//   219-225 -> 218-231; on one thread f16 145 -> 219, f32 139 -> 155: the products are
//   much faster, and on two threads the time goes to ggml's barriers (README);
// - its Zen 4 build (AVX-512, the CPU's AMX hidden): f16 291 -> 332-337, f32 252-256 ->
//   297-303;
// - its Sapphire Rapids build (AMX): f32 259-270 -> 330-349, bf16 300 -> 359-365, and f16
//   326-327 -> 407-413 (batches of 32: 407-423 -> 473-476) once ggml's AMX buffer, which
//   took f16 weights first, leaves them to this one (amx-buffer.cpp).
// Where the CPU multiplies bf16 pairs itself and has no AMX (Zen 4, Cooper Lake), bf16 stays
// with llama.cpp's own kernel, as in sgemm.cpp.
//
// How ours are chosen: repack.cpp asks ggml_repack_get_optimal_repack_type(tensor) which
// packing a weight takes, always with a non-const tensor pointer. The overload declared
// below takes exactly that, so C++ overload resolution sends those calls to it; it answers
// for our types and asks repack.cpp's own function (the const overload) for the rest.
#include "traits.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define ORION_PREPACK 1
#endif

static const ggml::cpu::tensor_traits * ggml_repack_get_optimal_repack_type(struct ggml_tensor * cur);

#include "repack.cpp"

#if defined(ORION_PREPACK)
#include "sgemm-packed.h"

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace orion_prepack {

template <orion_packed::Weights W>
class tensor_traits : public ggml::cpu::repack::tensor_traits_base {
    bool work_size(int /* n_threads */, const struct ggml_tensor * op, size_t & size) override {
        size = 0;
        return op->op == GGML_OP_MUL_MAT;
    }

    bool compute_forward(struct ggml_compute_params * params, struct ggml_tensor * op) override {
        if (op->op != GGML_OP_MUL_MAT) {
            // Unreachable: supports_op offers only MUL_MAT of a 2-D weight to these traits.
            // Falling back would let ggml read the panels as rows.
            GGML_ABORT("orion prepacked weights: %s is not a matrix product", ggml_op_name(op->op));
        }
        const ggml_tensor * src0 = op->src[0];
        const ggml_tensor * src1 = op->src[1];
        GGML_ASSERT(src1->type == GGML_TYPE_F32 && op->type == GGML_TYPE_F32);
        GGML_ASSERT(op->nb[0] == sizeof(float) && op->nb[1] % sizeof(float) == 0);
        const int64_t m = src0->ne[1], k = src0->ne[0], n = src1->ne[1];
        // Each token's activations as a row of k floats; gathered where a view spreads them.
        const bool rows = src1->nb[0] == sizeof(float) && src1->nb[1] % sizeof(float) == 0;
        std::vector<float> gathered;
        for (int64_t i3 = 0; i3 < src1->ne[3]; ++i3) {
            for (int64_t i2 = 0; i2 < src1->ne[2]; ++i2) {
                const char * b = (const char *) src1->data + i2 * src1->nb[2] + i3 * src1->nb[3];
                const float * B = (const float *) b;
                int64_t ldb = src1->nb[1] / sizeof(float);
                if (!rows) {
                    gathered.resize(n * k);
                    for (int64_t j = 0; j < n; ++j)
                        for (int64_t l = 0; l < k; ++l)
                            gathered[j * k + l] = *(const float *) (b + j * src1->nb[1] + l * src1->nb[0]);
                    B = gathered.data();
                    ldb = k;
                }
                float * C = (float *) ((char *) op->data + i2 * op->nb[2] + i3 * op->nb[3]);
                orion_packed::gemm_prepacked<W>(params->ith, params->nth, m, n, k, src0->data, B, ldb, C,
                                                op->nb[1] / sizeof(float));
            }
        }
        return true;
    }

    int repack(struct ggml_tensor * t, const void * data, size_t data_size) override {
        GGML_ASSERT(data_size == ggml_nbytes(t));
        orion_packed::prepack<W>(t->data, data, t->ne[1], t->ne[0]);
#if defined(__linux__) && defined(MADV_PAGEOUT)
        // The weights came from the model's mapped file, which stays mapped (other tensors
        // between them are read from it): its pages just read would stay resident beside
        // the packed copy, the weights counted twice. Nothing reads them again; let the
        // kernel take them back. A hint that keeps the contents (memory of any kind stays
        // as it is, only its pages may move out), hence harmless if `data` was a buffer.
        const uintptr_t page = (uintptr_t) sysconf(_SC_PAGESIZE);
        const uintptr_t from = ((uintptr_t) data + page - 1) & ~(page - 1);
        const uintptr_t to = ((uintptr_t) data + data_size) & ~(page - 1);
        if (to > from) {
            madvise((void *) from, to - from, MADV_PAGEOUT);
        }
#endif
        return 0;
    }
};

// Which weights: whole matrices (2 dimensions, rows stored one after another) whose rows
// fill whole panels. Other types and shapes keep repack.cpp's choice. Not views: ggml asks
// about every view of a weight too, and a view's rows would not start a panel. Not the
// vocabulary's matrices: a model whose output is tied to its token embeddings (Qwen3,
// EmbeddingGemma) has llama.cpp ask about the embeddings as an output matrix, and packing
// them would copy hundreds of MB that an embedding model's graph never multiplies (they
// stay in the mapped file), and some graphs read an output matrix by rows.
static const ggml::cpu::tensor_traits * choose(const struct ggml_tensor * t) {
    static const tensor_traits<orion_packed::Weights::F32> f32;
    static const tensor_traits<orion_packed::Weights::F16> f16;
    [[maybe_unused]] static const tensor_traits<orion_packed::Weights::BF16> bf16;
    if (ggml_n_dims(t) != 2 || t->ne[1] % orion_packed::NR != 0 || !ggml_is_contiguous(t) || t->view_src != nullptr ||
        std::strcmp(t->name, "token_embd.weight") == 0 || std::strcmp(t->name, "output.weight") == 0) {
        return nullptr;
    }
    switch (t->type) {
        case GGML_TYPE_F32:
            return &f32;
        case GGML_TYPE_F16:
            return &f16;
#if !defined(__AVX512BF16__) || defined(__AMX_TILE__)
        case GGML_TYPE_BF16:
            return &bf16;
#endif
        default:
            return nullptr;
    }
}

}  // namespace orion_prepack
#endif

static const ggml::cpu::tensor_traits * ggml_repack_get_optimal_repack_type(struct ggml_tensor * cur) {
#if defined(ORION_PREPACK)
    if (const ggml::cpu::tensor_traits * ours = orion_prepack::choose(cur)) {
        return ours;
    }
#endif
    return ggml_repack_get_optimal_repack_type(static_cast<const struct ggml_tensor *>(cur));
}
