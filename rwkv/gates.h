#pragma once
// The gates and the key activation of TimeMix and ChannelMix (rwkv/README.md "Forward pass") as
// differentiable ops, each one pass forward and one pass back (kernels/gates_math.h has the
// formulas; kernels/gates_op.h runs them on CPU or CUDA) instead of two or three ATen kernels each
// way.
#include <torch/torch.h>

namespace rwkv {

// sigmoid(r) ⊙ y, r and y of one shape. Its dtype is the one torch gives sigmoid(r) * y: the
// promotion of r's and y's (bf16 only when both are, as under bf16 autocast, where both come from
// matrix products or WKV on bf16 inputs). r and y may each be fp32 or bf16 (both fp64 on the CPU,
// for gradient checks); the arithmetic is fp32. Differentiable in r and y; the backward keeps r and
// y and recomputes the sigmoid.
torch::Tensor sigmoid_gate(const torch::Tensor& r, const torch::Tensor& y);

// relu(k)², in k's dtype (fp32 or bf16; fp64 on the CPU); the gradient 2·relu(k)·g is 0 at k = 0, as
// torch's relu. The backward keeps k.
torch::Tensor relu_square(const torch::Tensor& k);

}  // namespace rwkv
