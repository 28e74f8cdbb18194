#pragma once
// Loads and stores of a kernel's I/O type (fp32 or bf16) as the fp32 it computes in, for kernel
// sources (kernels/*.cuh) under either compiler (kernels/kernel_shim.h). bf16 stores round to
// nearest even, as cuda_bf16.h.
#include "kernels/kernel_shim.h"

namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE {

__device__ __forceinline__ float load(float x) { return x; }
__device__ __forceinline__ float load(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class IO>
__device__ __forceinline__ IO store(float x);
template <>
__device__ __forceinline__ float store<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

}  // namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE
