#pragma once
// TimeMix (`blocks.l.att`), the attention replacement of RWKV-4 (rwkv/README.md "Forward pass"):
//   k, v, r = key(x_k), value(x_v), receptance(x_r) with x_* the token-shift mixes of the input,
//   out = output(sigmoid(r) ⊙ WKV(time_decay, time_first, k, v)).
// Parameter names and registration order are the reference's, so the state_dict is a straight copy.
#include <torch/torch.h>

#include "rwkv/layers.h"
#include "rwkv/model_config.h"
#include "rwkv/wkv.h"

namespace rwkv {

// What TimeMix carries from one token to the next (4 of the 5 RNN-mode vectors of a layer).
struct TimeMixState {
  torch::Tensor prev_x;  // (B, D): the last token's ln1 output, in the model's dtype
  WkvState wkv;          // aa, bb, pp (B, A), fp32
};

class TimeMixImpl : public torch::nn::Module {
 public:
  TimeMixImpl(const ModelConfig& config, const torch::TensorOptions& options);

  // x: the ln1 output (B, T, D). Without a state the sequence starts fresh (zero token shift,
  // empty WKV state); with one it continues from `state`, which is then advanced past the last
  // token (prefill, RNN mode, or chunked processing; gradients flow through the state).
  torch::Tensor forward(const torch::Tensor& x, TimeMixState* state = nullptr);

  torch::Tensor time_decay, time_first;                 // (A); w = −exp(time_decay) inside WKV
  torch::Tensor time_mix_k, time_mix_v, time_mix_r;     // (1, 1, D)
  LinearNoBias key{nullptr}, value{nullptr}, receptance{nullptr};  // D → A
  LinearNoBias output{nullptr};                                    // A → D
};
TORCH_MODULE(TimeMix);

}  // namespace rwkv
