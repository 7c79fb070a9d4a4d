# Included into llama.cpp's CMake project (CMAKE_PROJECT_INCLUDE, after each project()) by
# every build of ours (scripts/build.js, scripts/targets.js, scripts/ggml-backends.js),
# directly or through the target's own file.
# GGML_ORION_CMAKE is a digest of these files (scripts/targets.js's cmakeInclude), passed
# only so that editing them re-runs llama-cpp-sys-2's build; read here so that CMake does
# not warn that it went unused.
set(ORION_CMAKE_DIGEST "${GGML_ORION_CMAKE}")
if(NOT ORION_GGML)
  set(ORION_GGML ON)
  # Each CPU variant compiles some files of ours in place of llama.cpp's, each of which
  # includes the file it replaces, whole, and changes what is listed here (see each file):
  # - scripts/cmake/sgemm.cpp for llamafile/sgemm.cpp: packed products for many tokens,
  #   and f16 and bf16 weights taken against f32 activations, on x86;
  # - scripts/cmake/ggml-ops.cpp for ggml-cpu/ops.cpp: GELU, the largest of a row
  #   (scripts/cmake/row-max.h) and flash attention's mask tiles in vectors on x86 (the
  #   last through a copy of ops.cpp with one edit: orion_ops_cpp below);
  # - scripts/cmake/amx-mmq.cpp for ggml-cpu/amx/mmq.cpp: the AMX tiles configured as
  #   they should be (without, quantized models crash on CPUs with AMX);
  # - scripts/cmake/ggml-repack.cpp for ggml-cpu/repack.cpp: f32, f16 and bf16 weights
  #   packed at load for few tokens' products, on x86 with AVX2 or AVX-512;
  # - scripts/cmake/amx-buffer.cpp for ggml-cpu/amx/amx.cpp: f16 weights left to the repack
  #   buffer (ggml's AMX buffer has no AMX kernel for them).
  # The targets exist only once their directories are processed, hence the deferred call
  # at the end of the top-level directory.
  set(ORION_REPLACED "llamafile/sgemm" "ggml-cpu/ops" "ggml-cpu/amx/mmq" "ggml-cpu/repack" "ggml-cpu/amx/amx")
  set(ORION_REPLACEMENTS "sgemm" "ggml-ops" "amx-mmq" "ggml-repack" "amx-buffer")
  set(ORION_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")
  # The copy of ops.cpp that ggml-ops.cpp includes (as ORION_OPS_CPP): flash attention's
  # tiled form reads each tile of the mask through orion_fa_mask_row (ggml-ops.cpp). The
  # edit must find ggml's loop once: a llama.cpp update that changes it stops the build
  # here, rather than leaving the update's code out or ours in.
  function(orion_ops_cpp src out)
    file(READ "${src}" text)
    # Bracket arguments: the C text holds semicolons, which CMake lists would split.
    set(old [=[
                    for (int tk = 0; tk < kv_tile; tk++) {
                        mask32[tq * KV_TILE_SZ + tk] = slope * GGML_CPU_FP16_TO_FP32(mp_row[ic + tk]);
                        if (mask32[tq * KV_TILE_SZ + tk] != -INFINITY) {
                            can_skip = false;
                        }
                    }
]=])
    set(new [=[
                    if (orion_fa_mask_row(mp_row + ic, mask32 + tq * KV_TILE_SZ, kv_tile, slope)) {
                        can_skip = false;
                    }
]=])
    string(FIND "${text}" "${old}" at)
    string(FIND "${text}" "${old}" last REVERSE)
    if(at EQUAL -1 OR NOT at EQUAL last)
      message(FATAL_ERROR "orion-native: ${src} no longer has flash attention's mask loop once")
    endif()
    string(REPLACE "${old}" "${new}" text "${text}")
    # Written only when it changes, so that a re-run of CMake does not rebuild every variant.
    file(WRITE "${out}.new" "${text}")
    configure_file("${out}.new" "${out}" COPYONLY)
  endfunction()
  function(orion_ggml_sources)
    get_property(dirs DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY SUBDIRECTORIES)
    set(all "")
    while(dirs)
      list(POP_FRONT dirs d)
      get_property(ts DIRECTORY "${d}" PROPERTY BUILDSYSTEM_TARGETS)
      list(APPEND all ${ts})
      get_property(sub DIRECTORY "${d}" PROPERTY SUBDIRECTORIES)
      list(APPEND dirs ${sub})
    endwhile()
    foreach(t ${all})
      get_target_property(srcs ${t} SOURCES)
      if(NOT srcs)
        continue()
      endif()
      set(changed "${srcs}")
      set(ops "${srcs}")
      list(FILTER ops INCLUDE REGEX "^(.*/)?ggml-cpu/ops\\.cpp$")
      if(ops)
        set(ops_copy "${CMAKE_BINARY_DIR}/orion/ops.cpp")
        if(NOT ops_copied)
          list(GET ops 0 ops_src)
          if(NOT IS_ABSOLUTE "${ops_src}")
            get_target_property(sdir ${t} SOURCE_DIR)
            set(ops_src "${sdir}/${ops_src}")
          endif()
          orion_ops_cpp("${ops_src}" "${ops_copy}")
          set(ops_copied ON)
        endif()
        target_compile_definitions(${t} PRIVATE "ORION_OPS_CPP=\"${ops_copy}\"")
      endif()
      foreach(old new IN ZIP_LISTS ORION_REPLACED ORION_REPLACEMENTS)
        list(TRANSFORM changed REPLACE "^(.*/)?${old}\\.cpp$" "${ORION_CMAKE_DIR}/${new}.cpp")
      endforeach()
      if(NOT changed STREQUAL srcs)
        set_target_properties(${t} PROPERTIES SOURCES "${changed}")
      endif()
    endforeach()
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL orion_ggml_sources)
endif()
