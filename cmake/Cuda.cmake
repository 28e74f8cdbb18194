# CUDA is enabled whenever nvcc is present, GPU or not: every .cu file compiles in CI for the
# architectures we ship (A100 = sm_80, H100/H200 = sm_90, plus sm_90 PTX so that newer GPUs
# JIT-compile the kernels instead of failing with "no kernel image"). TORCH_CUDA_ARCH_LIST must be set before
# find_package(Torch), whose fallback list includes compute_50 that nvcc 13 rejects.
option(RWKV_WITH_CUDA "Compile the CUDA kernels when nvcc is available" ON)
set(RWKV_HAVE_CUDA OFF)
if(RWKV_WITH_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
      set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0+PTX")
    endif()
    set(TORCH_CUDA_ARCH_LIST "$ENV{TORCH_CUDA_ARCH_LIST}")
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no CUDA20 flag for nvcc; .cu files need only C++17
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)  # the same libcudart.so that libtorch_cuda uses
    set(CMAKE_CUDA_ARCHITECTURES 80)  # only for enable_language's probe
    enable_language(CUDA)
    # Torch's CUDA setup owns the -gencode flags (from TORCH_CUDA_ARCH_LIST) and warns when
    # CMAKE_CUDA_ARCHITECTURES is also set.
    unset(CMAKE_CUDA_ARCHITECTURES)
    unset(CMAKE_CUDA_ARCHITECTURES CACHE)
    find_package(CUDAToolkit REQUIRED)
    set(RWKV_HAVE_CUDA ON)
    message(STATUS "CUDA kernels: compiled for TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}")
  else()
    message(STATUS "CUDA kernels: nvcc not found, building the CPU paths only")
  endif()
endif()
