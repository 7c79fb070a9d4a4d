# Included into llama.cpp's CMake project (CMAKE_PROJECT_INCLUDE, after each project()) by
# scripts/targets.js for the Windows (MinGW) build only.
if(MINGW AND NOT ORION_MINGW)
  set(ORION_MINGW ON)
  # Declarations llama.cpp needs that Debian 12's MinGW-w64 headers lack (see the header).
  add_compile_options(-include "${CMAKE_CURRENT_LIST_DIR}/mingw-compat.h")
  # ggml names its static libraries ggml.a, ggml-base.a and ggml-cpu.a on Windows
  # (ggml/CMakeLists.txt sets CMAKE_STATIC_LIBRARY_PREFIX to ""), while llama-cpp-sys-2
  # 0.1.161 links the lib*.a it finds: without the prefix ggml is left out of the link. The
  # targets exist only once their directories are processed, hence the deferred call at the
  # end of the top-level directory.
  function(orion_ggml_prefix)
    foreach(t ggml ggml-base ggml-cpu)
      if(TARGET ${t})
        set_target_properties(${t} PROPERTIES PREFIX "lib")
      endif()
    endforeach()
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL orion_ggml_prefix)
endif()
