# Included into llama.cpp's CMake project (CMAKE_PROJECT_INCLUDE, after each project()) by
# scripts/targets.js for the Windows (MinGW) build only.
# GGML_ORION_CMAKE is a digest of these files (scripts/targets.js's cmakeInclude), passed
# only so that editing them re-runs llama-cpp-sys-2's build; read here so that CMake does
# not warn that it went unused.
set(ORION_CMAKE_DIGEST "${GGML_ORION_CMAKE}")
# What every build of ours changes in ggml (f16 and bf16 matrix products on x86).
include("${CMAKE_CURRENT_LIST_DIR}/ggml.cmake")
if(MINGW AND NOT ORION_MINGW)
  set(ORION_MINGW ON)
  # Declarations llama.cpp needs that Debian 12's MinGW-w64 headers lack (see the header).
  add_compile_options(-include "${CMAKE_CURRENT_LIST_DIR}/mingw-compat.h")
  # ggml names its static libraries ggml.a, ggml-base.a and ggml-cpu.a on Windows
  # (ggml/CMakeLists.txt sets CMAKE_STATIC_LIBRARY_PREFIX to ""), while llama-cpp-sys-2
  # 0.1.161 links the lib*.a it finds: without the prefix ggml is left out of the link. The
  # targets exist only once their directories are processed, hence the deferred call at the
  # end of the top-level directory.
  #
  # With backends as modules (BUILD_SHARED_LIBS), llama.cpp and ggml are DLLs: their import
  # libraries are named lib<name>.a rather than MinGW's lib<name>.dll.a, the names
  # llama-cpp-sys-2 looks for (it links every lib*.a it finds, and llama-common by name).
  # And each DLL has MinGW's C++, GCC and thread runtimes linked in (-static), as the
  # addon has (CXXSTDLIB_STATIC): Windows has no libstdc++-6.dll or libwinpthread-1.dll.
  # One compiler builds them all, and all allocate from the one msvcrt heap.
  if(BUILD_SHARED_LIBS)
    set(CMAKE_IMPORT_LIBRARY_SUFFIX ".a")
    # --exclude-libs: a DLL exports its own symbols only, not those of the runtimes linked
    # into it (ggml-base.dll would export _Unwind_Resume and pthread_once, which then
    # clash with the runtimes linked into each DLL that imports it). Named one by one:
    # CMake links a DLL's own objects through an archive too (objects.a).
    set(ORION_MINGW_RUNTIMES "libgcc.a:libgcc_eh.a:libstdc++.a:libpthread.a:libwinpthread.a")
    string(APPEND CMAKE_SHARED_LINKER_FLAGS " -static -Wl,--exclude-libs,${ORION_MINGW_RUNTIMES}")
    string(APPEND CMAKE_MODULE_LINKER_FLAGS " -static -Wl,--exclude-libs,${ORION_MINGW_RUNTIMES}")
  endif()
  #
  # The CPU variant for Sapphire Rapids does not assemble with MinGW-w64: GCC 12 writes
  # AMX tile loads with a 32-bit stride register (Windows' `long`), which gas rejects. It
  # is built without AMX there, as the AVX-512 BF16 build it otherwise is (MSVC cannot
  # compile ggml's AMX code either, and llama.cpp's MSVC builds leave the level out); its
  # feature list then names no AMX, so that the score and llamaCpuFeatures say what the
  # code uses.
  function(orion_ggml_prefix)
    if(BUILD_SHARED_LIBS)
      foreach(t ggml-cpu-sapphirerapids ggml-cpu-sapphirerapids-feats)
        if(TARGET ${t})
          get_target_property(opts ${t} COMPILE_OPTIONS)
          if(opts)
            list(FILTER opts EXCLUDE REGEX "^-mamx")
            set_target_properties(${t} PROPERTIES COMPILE_OPTIONS "${opts}")
          endif()
          get_target_property(defs ${t} COMPILE_DEFINITIONS)
          if(defs)
            list(FILTER defs EXCLUDE REGEX "AMX")
            set_target_properties(${t} PROPERTIES COMPILE_DEFINITIONS "${defs}")
          endif()
        endif()
      endforeach()
      return()
    endif()
    foreach(t ggml ggml-base ggml-cpu)
      if(TARGET ${t})
        set_target_properties(${t} PROPERTIES PREFIX "lib")
      endif()
    endforeach()
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL orion_ggml_prefix)
endif()
