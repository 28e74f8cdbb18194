// Built only when nvcc is absent (kernels/CMakeLists.txt): the CPU-only answers.
#include "kernels/cuda_runtime_info.h"

namespace rwkv::kernels {

bool cuda_compiled() { return false; }
std::string cuda_compiled_archs() { return ""; }
int cuda_runtime_device_count() { return 0; }
std::string cuda_device_name(int) { return ""; }
bool cuda_device_memory(int, uint64_t&, uint64_t&) { return false; }

}  // namespace rwkv::kernels
