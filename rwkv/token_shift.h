#pragma once
// Token shift and time mixing, shared by TimeMix and ChannelMix (rwkv/README.md "Forward pass").
#include <torch/torch.h>

namespace rwkv {

// x (B, T, D) → xx with xx[:, t] = x[:, t-1] and xx[:, 0] = prev (B, D), the previous token's
// input when a sequence continues (RNN mode, prefill), or zeros for a fresh sequence (the
// reference's ZeroPad2d((0, 0, 1, -1))) when `prev` is undefined.
torch::Tensor token_shift(const torch::Tensor& x, const torch::Tensor& prev);

// x·μ + xx·(1 − μ), with μ (1, 1, D) cast to x's dtype so that bf16 activations stay bf16.
torch::Tensor time_mix(const torch::Tensor& x, const torch::Tensor& xx, const torch::Tensor& mu);

}  // namespace rwkv
