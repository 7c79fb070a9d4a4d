// Compiled into each of ggml's CPU variants in place of ggml-cpu/amx/amx.cpp (see
// ggml.cmake): that file, whole, with f16 weights left to the other buffers.
//
// ggml's AMX buffer (the sapphirerapids build) takes f16 weights as well as quantized ones,
// though it has no AMX kernel for them: it keeps them as they are, and their products went
// to llamafile_sgemm (scripts/cmake/sgemm.cpp), the path of an f16 weight in no extra buffer.
// Declined here, they go to the next extra buffer, ggml's repack buffer, where
// scripts/cmake/ggml-repack.cpp packs them at load as on every other x86 CPU. Measured with
// all-MiniLM-L6-v2's f16 twin on a 2-core Xeon with AMX (2026-12-06): see the README.
//
// amx.cpp names GGML_TYPE_F16 once, as the case of its supports_op that accepts f16.
// Everything it includes is included first, so that the name below changes that case
// alone: f16 then falls to the switch's default, which declines.
#include "amx/amx.h"
#include "amx/common.h"
#include "amx/mmq.h"
#include "ggml-backend-impl.h"
#include "ggml-backend.h"
#include "ggml-impl.h"
#include "ggml-cpu.h"
#include "traits.h"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdlib>
#include <cstring>
#include <memory>

#define GGML_TYPE_F16 GGML_TYPE_COUNT
#include "amx/amx.cpp"
#undef GGML_TYPE_F16
