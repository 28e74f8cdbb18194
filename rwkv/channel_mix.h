#pragma once
// ChannelMix (`blocks.l.ffn`), the feed-forward of RWKV-4 (rwkv/README.md "Forward pass"):
//   out = sigmoid(receptance(x_r)) ⊙ value(relu(key(x_k))²)
// with x_* the token-shift mixes of the input. Names and order as the reference's state_dict.
#include <torch/torch.h>

#include "rwkv/layers.h"
#include "rwkv/model_config.h"

namespace rwkv {

// What ChannelMix carries to the next token (the 5th RNN-mode vector of a layer).
struct ChannelMixState {
  torch::Tensor prev_x;  // (B, D): the last token's ln2 output
};

class ChannelMixImpl : public torch::nn::Module {
 public:
  ChannelMixImpl(const ModelConfig& config, const torch::TensorOptions& options);

  // x: the ln2 output (B, T, D); `state` as in TimeMix::forward.
  torch::Tensor forward(const torch::Tensor& x, ChannelMixState* state = nullptr);

  torch::Tensor time_mix_k, time_mix_r;  // (1, 1, D)
  LinearNoBias key{nullptr};             // D → F
  LinearNoBias receptance{nullptr};      // D → D
  LinearNoBias value{nullptr};           // F → D
};
TORCH_MODULE(ChannelMix);

}  // namespace rwkv
