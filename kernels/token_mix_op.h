#pragma once
// Token shift + μ-mixes on tensors (kernels/token_mix_math.h): the argument bundles that the CPU and
// CUDA implementations share, and the entry points that validate them and run on the tensors'
// device. rwkv/token_shift.cpp builds the autograd op on top of these.
#include <ATen/core/Tensor.h>

#include <vector>

#include "kernels/token_mix_kernel_args.h"

namespace rwkv::kernels {

// Shapes: x, gx (B, T, C) in the x dtype (fp32 or bf16; fp64 on the CPU, for finite-difference
// checks); prev, gprev (B, C) in the x dtype, or undefined (a fresh sequence; no gradient wanted);
// out_j, gout_j (B, T, C) in the mix dtype: the x dtype, or bf16 for fp32 x (autocast). μ_j and
// ∂L/∂μ_j are (C) in the parameters' dtype, one for all μ_j: fp32 or bf16 (fp64 too on the CPU),
// whatever x's; the kernels read μ as stored, compute in fp32 (fp64 for fp64 x), sum ∂L/∂μ in
// that precision and round it once to the μ dtype. 1 … kMaxMixes mixes; everything contiguous on
// one device.
struct TokenMixForwardArgs {
  at::Tensor x, prev;
  std::vector<at::Tensor> mu;
  std::vector<at::Tensor> out;  // outputs
};

struct TokenMixBackwardArgs {
  at::Tensor x, prev;
  std::vector<at::Tensor> mu, gout;
  // Outputs.
  at::Tensor gx, gprev;
  std::vector<at::Tensor> gmu;
};

// Validate (a clear message naming the argument otherwise) and run.
void token_mix_forward(const TokenMixForwardArgs& args);
void token_mix_backward(const TokenMixBackwardArgs& args);

// Tokens per CUDA thread: enough threads to fill a GPU at B·T/chunk·C, few ∂L/∂μ rows to sum.
inline constexpr int64_t kTokenMixChunk = 16;

// The raw-pointer arguments of the CUDA kernels for validated tensors: what
// kernels/token_mix_op_cuda.cpp launches on the GPU and the host-run kernel tests on the CPU.
// `gmu_partial` is (mixes, B·ceil(T/chunk), C) fp32, summed over its middle dimension into gmu.
TokenMixIo token_mix_kernel_io(const at::Tensor& x, const at::Tensor& mixed);
TokenMixParam token_mix_kernel_param(const at::Tensor& mu);
TokenMixCudaForward token_mix_kernel_args(const TokenMixForwardArgs& args, int64_t chunk);
TokenMixCudaBackward token_mix_kernel_args(const TokenMixBackwardArgs& args, int64_t chunk,
                                           const at::Tensor& gmu_partial);

// The CUDA side (kernels/token_mix_op_cuda.cpp; a build without CUDA throws).
void token_mix_forward_cuda(const TokenMixForwardArgs& args);
void token_mix_backward_cuda(const TokenMixBackwardArgs& args);

}  // namespace rwkv::kernels
