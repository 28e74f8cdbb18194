#pragma once
// What the CUDA side of this build sees, queried through the CUDA runtime directly (not through
// torch): used by `rwkv env` and by the smoke test to check that the CUDA translation units are
// linked and that a GPU-less machine is handled without crashing.
#include <string>

namespace rwkv::kernels {

// True when this binary contains compiled CUDA kernels.
bool cuda_compiled();
// Architectures the kernels were compiled for (TORCH_CUDA_ARCH_LIST), e.g. "8.0,9.0" (empty without CUDA).
std::string cuda_compiled_archs();
// Number of visible devices per cudaGetDeviceCount; 0 when there is no driver or no GPU.
int cuda_runtime_device_count();
// The name of device `index` (cudaDeviceProp::name, e.g. "NVIDIA H100 80GB HBM3"); "" when there
// is no such device or no CUDA. trainer/bench/flops_peak.cpp looks peaks up by it.
std::string cuda_device_name(int index);

}  // namespace rwkv::kernels
