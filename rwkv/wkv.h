#pragma once
// The WKV operator of RWKV-4 (kernels/README.md "WKV") as a differentiable LibTorch op, CPU and CUDA, any T.
//
//   y_t = [ Σ_{i<t} e^{(t-1-i)w + k_i} v_i + e^{u+k_t} v_t ] / [ Σ_{i<t} e^{(t-1-i)w + k_i} + e^{u+k_t} ]
//
// with w = -exp(time_decay) computed inside the op in fp32, u = time_first. The recurrence state
// (aa, bb, pp) is the numerically stable (numerator, denominator, exponent) triple; a state
// passed in continues a sequence, the returned state continues it further (chunked prefill,
// RNN mode).
#include <torch/torch.h>

#include <optional>

namespace rwkv {

// (A, B) = (aa, bb)·e^pp are the decayed numerator and denominator sums. pp of a returned state
// is not differentiable: every consumer of a state (the next chunk, RNN mode) depends on it only
// through A and B, whose gradients flow back through aa and bb.
struct WkvState {
  torch::Tensor aa, bb, pp;  // each (B, C), fp32 (fp64 for fp64 inputs)
};

struct WkvOutput {
  torch::Tensor y;  // (B, T, C), dtype of k/v
  WkvState state;   // after the last token
};

// The state before any token: aa = bb = 0, pp = -1e38.
WkvState wkv_initial_state(int64_t batch, int64_t channels, const torch::Device& device);

// time_decay, time_first: (C), fp32 or bf16 (fp64 too on CPU), read as stored and used in fp32
// (time_first is cast to time_decay's dtype if they differ); their gradients come back in their
// dtypes. k, v: (B, T, C), fp32 or bf16 (fp64 too on CPU, for gradient checks). Without a state
// the sequence starts from the empty one, made inside the kernels (no tensors filled for it).
// Differentiable in time_decay, time_first, k, v and the initial state (aa, bb, pp). The backward
// needs a transient (3, B, T, C) fp32 workspace (the state before every step; kernels/wkv_cpu.cpp
// says why); nothing depends on T at compile time.
WkvOutput wkv(const torch::Tensor& time_decay, const torch::Tensor& time_first,
              const torch::Tensor& k, const torch::Tensor& v,
              const std::optional<WkvState>& state = std::nullopt);

}  // namespace rwkv
