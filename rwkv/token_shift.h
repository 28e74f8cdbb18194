#pragma once
// Token shift and the μ-mixes shared by TimeMix and ChannelMix (rwkv/README.md "Forward pass"), as
// one differentiable op: every mix in one pass over x, every gradient in one pass back
// (kernels/token_mix_math.h has the formulas; kernels/token_mix_op.h runs them on CPU or CUDA).
#include <torch/torch.h>

#include <vector>

namespace rwkv {

// x (B, T, D), the LayerNorm output → [x·μ_j + xx·(1 − μ_j) for each μ_j], each (B, T, D), with
// xx[:, t] = x[:, t − 1] and xx[:, 0] = prev (B, D), the previous token's input when a sequence
// continues (RNN mode, prefill, segments), or zeros for a fresh sequence (the reference's
// ZeroPad2d((0, 0, 1, −1))) when `prev` is undefined. μ_j: 1 to 3 tensors of D elements
// ((1, 1, D) parameters). Differentiable in x, prev and every μ_j.
//
// The mixes are in x's dtype, except under autocast to bf16 on x's device, where they are bf16
// (the dtype the matrix products that read them compute in; the arithmetic is fp32 either way).
// x may be fp32 or bf16 (fp64 on the CPU, for gradient checks). μ is read in its own dtype (fp32
// or bf16, fp64 on the CPU; the arithmetic is fp32, fp64 for fp64 x) and ∂L/∂μ, summed in that
// precision, comes back in it; prev is cast to x's dtype and its gradient returned in its own.
std::vector<torch::Tensor> token_shift_mix(const torch::Tensor& x, const torch::Tensor& prev,
                                           const std::vector<torch::Tensor>& mu);

}  // namespace rwkv
