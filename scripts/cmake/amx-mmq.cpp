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

// (f16 weights, which ggml's AMX buffer also took, into AVX-512 dot products, are left to
// the repack buffer by scripts/cmake/amx-buffer.cpp.)
#include "amx/mmq.cpp"
