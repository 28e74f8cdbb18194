#pragma once
// The arguments of the WKV kernels (kernels/wkv_kernels.cuh), free of CUDA and torch headers so
// that the CUDA build (kernels/wkv_cuda.h) and the host build (kernels/wkv_host.h) share them.
#include <cstdint>

namespace rwkv::kernels {

// Element type of k, v, y, gy, gk, gv, and (separately) of the parameters time_decay and
// time_first and their gradients; state, partials and workspace are always fp32.
enum class WkvIo { f32, bf16 };

// All arrays contiguous on one device: (B, T, C) for the I/O arrays, (C) for the parameters,
// (B, C) for the states and the per-batch partials. The kernels compute w = −exp(time_decay)
// themselves (wkv_math.h decay). A null initial state is the empty one (aa = bb = 0, pp = −1e38):
// a fresh sequence needs no tensors filled for it.
struct WkvCudaForward {
  int64_t B, T, C;
  WkvIo param;             // dtype of time_decay and time_first
  const void* time_decay;  // (C)
  const void* time_first;  // (C)
  const void* k;
  const void* v;
  void* y;
  const float* aa0;  // the state before token 0, or null (all three): the empty state
  const float* bb0;
  const float* pp0;
  float* aa;  // out: the state after token T-1
  float* bb;
  float* pp;
};

struct WkvCudaBackward {
  int64_t B, T, C;
  WkvIo param;
  const void* time_decay;
  const void* time_first;
  const void* k;
  const void* v;
  const void* gy;
  const float* aa0;     // null: the empty state (and no initial-state gradients)
  const float* bb0;
  const float* pp0;
  const float* g_aa_T;  // null (both): the final state does not reach the loss
  const float* g_bb_T;
  void* gk;
  void* gv;
  void* g_decay;  // (C) in the parameter dtype: ∂L/∂time_decay, summed over the batch
  void* g_first;  // (C): ∂L/∂time_first
  float* g_aa0;   // written when aa0 is given
  float* g_bb0;
  float* g_pp0;
  float* gw;         // (B, C) scratch: ∂L/∂w per batch row, summed over t
  float* gu;         // (B, C) scratch: ∂L/∂u likewise
  float* workspace;  // (3, B, T, C): the state before every step
};

}  // namespace rwkv::kernels
