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

}  // namespace rwkv::kernels
