# Included into llama.cpp's CMake project (CMAKE_PROJECT_INCLUDE, after each project()) by
# every build of ours (scripts/build.js, scripts/targets.js, scripts/ggml-backends.js),
# directly or through the target's own file.
# GGML_ORION_CMAKE is a digest of these files (scripts/targets.js's cmakeInclude), passed
# only so that editing them re-runs llama-cpp-sys-2's build; read here so that CMake does
# not warn that it went unused.
set(ORION_CMAKE_DIGEST "${GGML_ORION_CMAKE}")
if(NOT ORION_GGML)
  set(ORION_GGML ON)
  # Each CPU variant compiles scripts/cmake/sgemm.cpp in place of llamafile's sgemm.cpp:
  # the same file with f16 and bf16 weights taken against f32 activations on x86 (see
  # sgemm.cpp). The targets exist only once their directories are processed, hence the
  # deferred call at the end of the top-level directory.
  set(ORION_SGEMM "${CMAKE_CURRENT_LIST_DIR}/sgemm.cpp")
  function(orion_ggml_sgemm)
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
      if(srcs AND srcs MATCHES "llamafile/sgemm\\.cpp")
        list(TRANSFORM srcs REPLACE "^.*llamafile/sgemm\\.cpp$" "${ORION_SGEMM}")
        set_target_properties(${t} PROPERTIES SOURCES "${srcs}")
      endif()
    endforeach()
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL orion_ggml_sgemm)
endif()
