#include "kernels/cuda_runtime_info.h"

#include <cuda_runtime.h>

namespace rwkv::kernels {

bool cuda_compiled() { return true; }

std::string cuda_compiled_archs() { return RWKV_CUDA_ARCHS; }

int cuda_runtime_device_count() {
  int n = 0;
  // Without a driver this returns cudaErrorInsufficientDriver / cudaErrorNoDevice: not fatal.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later runtime calls start clean
    return 0;
  }
  return n;
}

std::string cuda_device_name(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return prop.name;
}

bool cuda_device_memory(int index, uint64_t& free_bytes, uint64_t& total_bytes) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(index) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  size_t free = 0, total = 0;
  const bool ok = cudaMemGetInfo(&free, &total) == cudaSuccess;
  if (!ok) cudaGetLastError();
  cudaSetDevice(previous);
  free_bytes = free;
  total_bytes = total;
  return ok;
}

}  // namespace rwkv::kernels
