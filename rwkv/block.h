#pragma once
// One RWKV-4 block (`blocks.l`): x += att(ln1(x)); x += ffn(ln2(x)); block 0 first applies ln0 to
// the embedding (the "small-init embedding" of rwkv/README.md "Forward pass"). Registration order ln1, ln2, ln0, att,
// ffn is the reference's.
#include <torch/torch.h>

#include "rwkv/channel_mix.h"
#include "rwkv/layers.h"
#include "rwkv/model_config.h"
#include "rwkv/time_mix.h"

namespace rwkv {

// The RNN-mode state of one layer: the 5 vectors of kernels/README.md "WKV" (previous ln1 output, aa, bb, pp,
// previous ln2 output).
struct LayerState {
  TimeMixState att;
  ChannelMixState ffn;
};

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& config, int64_t layer_id, const torch::TensorOptions& options);

  // x (B, T, D) → (B, T, D); `state` as in TimeMix::forward (continue and advance, or fresh).
  torch::Tensor forward(const torch::Tensor& x, LayerState* state = nullptr);

  int64_t layer_id() const { return layer_id_; }

  LayerNorm ln1{nullptr}, ln2{nullptr};
  LayerNorm ln0{nullptr};  // block 0 only
  TimeMix att{nullptr};
  ChannelMix ffn{nullptr};

 private:
  int64_t layer_id_;
};
TORCH_MODULE(Block);

}  // namespace rwkv
