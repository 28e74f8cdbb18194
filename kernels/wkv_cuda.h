#pragma once
// The WKV CUDA kernels behind raw pointers (no torch headers on the nvcc side): one thread per
// (batch, channel) looping over any T chosen at run time, calling the recurrences of
// kernels/wkv_math.h. Launched on the caller's stream; kernels/wkv_op_cuda.cpp is the torch-side
// dispatch (device guard, current stream, checks).
#include <cuda_runtime_api.h>

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

// Return the launch status (cudaGetLastError after the launch).
cudaError_t wkv_cuda_forward(WkvIo io, const WkvCudaForward& args, cudaStream_t stream);
// The same result by the chunked formulation of wkv_math.h (parallel over time too): chunks of
// `chunk` tokens, threads over (chunk, b, c) for the summaries and the outputs, a scan over the
// chunks per (b, c) in between. `chunk_state` is (3, ceil(T/chunk), B, C) fp32 scratch.
cudaError_t wkv_cuda_forward_chunked(WkvIo io, const WkvCudaForward& args, int64_t chunk, float* chunk_state,
                                     cudaStream_t stream);
cudaError_t wkv_cuda_backward(WkvIo io, const WkvCudaBackward& args, cudaStream_t stream);

}  // namespace rwkv::kernels
