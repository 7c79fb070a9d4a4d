# Included into llama.cpp's CMake project (CMAKE_PROJECT_INCLUDE, after each project()) for
# Linux arm64 builds: the cross build (scripts/targets.js, Debian 12's aarch64-linux-gnu
# GCC 12) and a build from source on an arm64 machine (scripts/build.js).
# GGML_ORION_CMAKE is a digest of these files (scripts/targets.js's cmakeInclude), passed
# only so that editing them re-runs llama-cpp-sys-2's build; read here so that CMake does
# not warn that it went unused.
set(ORION_CMAKE_DIGEST "${GGML_ORION_CMAKE}")
# What every build of ours changes in ggml (f16 and bf16 matrix products on x86).
include("${CMAKE_CURRENT_LIST_DIR}/ggml.cmake")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$" AND NOT ORION_ARM64)
  set(ORION_ARM64 ON)
  # ggml's CPU variants for Linux arm64 (GGML_CPU_ALL_VARIANTS) end with two for Armv9.2
  # with SME, compiled with -march=armv9.2-a+...+sme: GCC 12 knows neither armv9.2-a nor
  # +sme, GCC 13 not +sme (GCC 14 does). They are compiled here at the Armv8.6 level of their other
  # features instead, the code of the armv8.6_1 and armv8.6_2 variants, and
  # scripts/build.js leaves them out of the package: a CPU with SME runs armv8.6_2 (SME
  # comes with Armv9.2, which has everything that variant uses). Their score still asks
  # for SME, so even a build that kept them would pick them only where the CPU has it.
  function(orion_arm64_variants)
    foreach(t ggml-cpu-armv9.2_1 ggml-cpu-armv9.2_2)
      if(TARGET ${t})
        get_target_property(opts ${t} COMPILE_OPTIONS)
        if(opts)
          list(TRANSFORM opts REPLACE "^-march=armv9\\.2-a(.*)\\+sme$" "-march=armv8.6-a\\1")
          set_target_properties(${t} PROPERTIES COMPILE_OPTIONS "${opts}")
        endif()
      endif()
    endforeach()
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL orion_arm64_variants)
endif()
