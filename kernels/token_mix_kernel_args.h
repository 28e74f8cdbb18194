#pragma once
// The arguments of the token-shift mix kernels (kernels/token_mix_kernels.cuh), free of CUDA and
// torch headers so that the CUDA build (kernels/token_mix_cuda.h) and the host build
// (kernels/token_mix_host.h) share them.
#include <cstdint>

#include "kernels/token_mix_math.h"

namespace rwkv::kernels {

// Element types of x (with prev, gx, gprev) and of the mixes (out, gout). fp32 x with bf16 mixes
// is bf16 autocast: the LayerNorm output stays fp32, the mixes feed bf16 matrix products.
enum class TokenMixIo { f32, f32_bf16, bf16 };

// Element type of the μ_j and their gradients: the parameters' own dtype, read as stored (no cast
// launched before the kernels; the arithmetic is fp32 either way).
enum class TokenMixParam { f32, bf16 };

// All arrays contiguous on one device: x, out_j, gout_j, gx (B, T, C); prev, gprev (B, C); μ_j (C)
// in `param`. Each thread takes `chunk` consecutive tokens of one (b, c).
struct TokenMixCudaForward {
  int64_t B, T, C, chunk;
  int mixes;
  TokenMixParam param;
  const void* x;
  const void* prev;  // nullptr: a fresh sequence (zeros)
  const void* mu[token_mix::kMaxMixes];
  void* out[token_mix::kMaxMixes];
};

struct TokenMixCudaBackward {
  int64_t B, T, C, chunk;
  int mixes;
  TokenMixParam param;
  const void* x;
  const void* prev;  // nullptr: zeros
  const void* mu[token_mix::kMaxMixes];
  const void* gout[token_mix::kMaxMixes];
  void* gx;
  void* gprev;                                // nullptr: not wanted
  float* gmu_partial[token_mix::kMaxMixes];  // (B·ceil(T/chunk), C): ∂L/∂μ_j per (b, chunk), summed after
};

}  // namespace rwkv::kernels
