# LibTorch = the PyPI torch wheel in the project's venv (scripts/setup.sh installs it): its
# include/, lib/ and share/cmake serve as LibTorch. A user's own LibTorch wins when Torch_DIR or
# CMAKE_PREFIX_PATH already points at one.
set(RWKV_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH "Python of the project venv")
if(NOT Torch_DIR AND EXISTS "${RWKV_PYTHON}")
  # find_spec locates the package without importing it (an import loads all CUDA libraries).
  execute_process(
    COMMAND "${RWKV_PYTHON}" -c "import importlib.util,os;print(os.path.dirname(importlib.util.find_spec('torch').origin))"
    OUTPUT_VARIABLE RWKV_TORCH_PKG OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(_rc EQUAL 0 AND EXISTS "${RWKV_TORCH_PKG}/share/cmake/Torch")
    list(APPEND CMAKE_PREFIX_PATH "${RWKV_TORCH_PKG}/share/cmake")
  endif()
endif()
find_package(Torch REQUIRED)
# at::parallel_for (ATen/Parallel-inl.h) splits a loop over threads only in translation units built
# with OpenMP (_OPENMP selects ATen/ParallelOpenMP.h); elsewhere it runs the whole loop on the
# calling thread. Without this every CPU kernel of ours (kernels/*_cpu.cpp) ran on one thread while
# LibTorch's own ran on all. Every C++ target, the precompiled header included, gets the flag (the
# header must be built with the flags of its users). The wheel's libgomp.so.1 has the soname of the
# compiler's, so one OpenMP runtime serves both at run time.
find_package(OpenMP REQUIRED COMPONENTS CXX)
link_libraries(OpenMP::OpenMP_CXX)
if(RWKV_HAVE_CUDA)
  set(CMAKE_CUDA_ARCHITECTURES OFF)  # the -gencode flags come from TORCH_CUDA_ARCH_LIST
endif()
if(NOT RWKV_TORCH_PKG)
  get_filename_component(RWKV_TORCH_PKG "${TORCH_INCLUDE_DIRS}" DIRECTORY) # …/torch/include → …/torch
  list(GET RWKV_TORCH_PKG 0 RWKV_TORCH_PKG)
endif()
message(STATUS "LibTorch ${Torch_VERSION} from ${Torch_DIR}")

# libtorch_cuda.so needs cuSPARSELt, NVSHMEM, cuFile… which the system toolkit lacks; the wheel's
# nvidia-* packages carry them and libtorch finds them through its own RPATH at load time. The
# linker resolves a shared library's dependencies itself, so tell it where they are.
get_filename_component(_site "${RWKV_TORCH_PKG}" DIRECTORY)
file(GLOB RWKV_NVIDIA_LIB_DIRS LIST_DIRECTORIES true "${_site}/nvidia/*/lib" "${_site}/nvidia/cu*/lib")
set(RWKV_TORCH_LINK_OPTIONS "-Wl,-rpath-link,${RWKV_TORCH_PKG}/lib")
foreach(_d IN LISTS RWKV_NVIDIA_LIB_DIRS)
  string(APPEND RWKV_TORCH_LINK_OPTIONS ",-rpath-link,${_d}")
endforeach()
add_link_options("${RWKV_TORCH_LINK_OPTIONS}")

# libtorch.so exports its own copies of 64 std::filesystem functions (remove_all, rename,
# create_directories, …). With libtorch first in DT_NEEDED they interpose on libstdc++'s, and
# libtorch's remove_all jumps to a null pointer (seen: TempDir's destructor crashed). Naming
# libstdc++ first on every link line makes the loader bind these symbols to libstdc++.
add_link_options("LINKER:--push-state,--no-as-needed" "-lstdc++" "LINKER:--pop-state")
