#pragma once
// What a kernel source (kernels/*.cuh: kernels and their launch sites) may use, from either
// compiler. Under nvcc: the CUDA runtime and cuda_bf16.h. Under g++: kernels/host_cuda.h, with
// the CUDA function qualifiers defined away. Kernel sources write launches as
//   RWKV_LAUNCH(grid, block, stream, kernel)(args...);
// (the kernel last, since a template argument list may hold commas) and put their code in
// namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE: `cuda` under nvcc, `host` under g++, so the
// two builds of one source link into one binary. RWKV_UNROLL before a loop of constant trip count
// unrolls it fully (small per-thread arrays indexed by its counter then live in registers).
#if defined(__CUDACC__)

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#define RWKV_KERNEL_NAMESPACE cuda
#define RWKV_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<grid, block, 0, stream>>>
#define RWKV_UNROLL _Pragma("unroll")

#else

#include "kernels/host_cuda.h"

#define RWKV_KERNEL_NAMESPACE host
#define RWKV_UNROLL _Pragma("GCC unroll 16")
#define RWKV_LAUNCH(grid, block, stream, ...) ::rwkv::kernels::host::Launch(grid, block, stream, __VA_ARGS__)
#define __global__
#define __device__
#define __forceinline__ inline

#endif
