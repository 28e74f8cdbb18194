#pragma once
// The arguments of the gate and activation kernels (kernels/gates_kernels.cuh), free of CUDA and
// torch headers so that the CUDA build (kernels/gates_cuda.h) and the host build
// (kernels/gates_host.h) share them.
#include <cstdint>

namespace rwkv::kernels {

// Element type of one kernel array; the arithmetic is fp32 for both.
enum class GateType { f32, bf16 };

// One thread per element in blocks of kGateThreads, at most kGateMaxBlocks blocks (CUDA's limit
// on gridDim.x): n ≤ kGateThreads·kGateMaxBlocks, which kernels/gates_op.cpp checks.
inline constexpr int64_t kGateThreads = 256;
inline constexpr int64_t kGateMaxBlocks = 2147483647;

// The sigmoid gate σ(r)·y over n elements. r and y may differ in type (fp32 and bf16); the output
// and its gradient are fp32 unless both are bf16 (torch's type promotion), ∂L/∂r and ∂L/∂y are in
// r's and y's types. All arrays contiguous on one device.
struct GateCudaForward {
  int64_t n;
  GateType r_type, y_type;
  const void* r;
  const void* y;
  void* out;
};

struct GateCudaBackward {
  int64_t n;
  GateType r_type, y_type;
  const void* r;
  const void* y;
  const void* gout;  // the output's type
  void* gr;
  void* gy;
};

// max(k, 0)² over n elements, k, out, gout and gk all of one type.
struct ReluSquareCudaForward {
  int64_t n;
  GateType type;
  const void* k;
  void* out;
};

struct ReluSquareCudaBackward {
  int64_t n;
  GateType type;
  const void* k;
  const void* gout;
  void* gk;
};

}  // namespace rwkv::kernels
