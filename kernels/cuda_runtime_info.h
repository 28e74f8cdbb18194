#pragma once
// What the CUDA side of this build sees, queried through the CUDA runtime directly (not through
// torch): used by `rwkv env` and by the smoke test to check that the CUDA translation units are
// linked and that a GPU-less machine is handled without crashing.
#include <cstdint>
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
// Free and total memory of device `index` in bytes (cudaMemGetInfo on that device); false when
// there is no such device or no CUDA. trainer/train/memory_check.cpp compares a run's need with it.
bool cuda_device_memory(int index, uint64_t& free_bytes, uint64_t& total_bytes);

}  // namespace rwkv::kernels
