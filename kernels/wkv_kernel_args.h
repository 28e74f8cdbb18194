#pragma once
// The arguments of the WKV kernels (kernels/wkv_kernels.cuh), free of CUDA and torch headers so
// that the CUDA build (kernels/wkv_cuda.h) and the host build (kernels/wkv_host.h) share them.
#include <cstdint>

namespace rwkv::kernels {

// Element type of k, v, y, gy, gk, gv; state, w, u, partials and workspace are always fp32.
enum class WkvIo { f32, bf16 };

// All arrays contiguous on one device: (B, T, C) for the I/O arrays, (C) for w and u, (B, C)
// for the state and the per-batch partials.
struct WkvCudaForward {
  int64_t B, T, C;
  const float* w;
  const float* u;
  const void* k;
  const void* v;
  void* y;
  float* aa;  // in: initial state, out: final state
  float* bb;
  float* pp;
};

struct WkvCudaBackward {
  int64_t B, T, C;
  const float* w;
  const float* u;
  const void* k;
  const void* v;
  const void* gy;
  const float* aa0;
  const float* bb0;
  const float* pp0;
  const float* g_aa_T;
  const float* g_bb_T;
  void* gk;
  void* gv;
  float* gw;
  float* gu;
  float* g_aa0;
  float* g_bb0;
  float* g_pp0;
  float* workspace;  // (3, B, T, C): the state before every step
};

}  // namespace rwkv::kernels
