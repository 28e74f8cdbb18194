# torch/torch.h costs ~20 s per translation unit on 2 cores; precompile it once (C++ only, never
# for nvcc) in a tiny object library and let every C++ target reuse it.
add_library(rwkv_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch_anchor.cpp)
target_link_libraries(rwkv_pch PUBLIC torch)
target_precompile_headers(rwkv_pch PUBLIC "$<$<COMPILE_LANGUAGE:CXX>:<torch/torch.h$<ANGLE-R>>")

# rwkv_use_pch(target): reuse the shared precompiled header in `target`'s C++ sources.
function(rwkv_use_pch target)
  target_precompile_headers(${target} REUSE_FROM rwkv_pch)
endfunction()

# rwkv_folder_library(name folder deps...): the library of one source folder (trainer/README.md: each
# folder is one target). Sources are globbed so that adding a file needs no CMake edit.
function(rwkv_folder_library name)
  file(GLOB _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  list(FILTER _srcs EXCLUDE REGEX "/main\\.cpp$")
  if(NOT _srcs)  # a folder whose sources have not landed yet: headers only
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARGN})
    return()
  endif()
  add_library(${name} STATIC ${_srcs})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARGN})
  rwkv_use_pch(${name})
endfunction()
