#include "rwkv/block.h"

namespace rwkv {

BlockImpl::BlockImpl(const ModelConfig& config, int64_t layer_id,
                     const torch::TensorOptions& options)
    : layer_id_(layer_id) {
  const int64_t D = config.n_embd;
  ln1 = register_module("ln1", LayerNorm(D, options));
  ln2 = register_module("ln2", LayerNorm(D, options));
  if (layer_id == 0) ln0 = register_module("ln0", LayerNorm(D, options));
  att = register_module("att", TimeMix(config, options));
  ffn = register_module("ffn", ChannelMix(config, options));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& input, LayerState* state) {
  torch::Tensor x = ln0 ? ln0(input) : input;
  x = x + att(ln1(x), state ? &state->att : nullptr);
  return x + ffn(ln2(x), state ? &state->ffn : nullptr);
}

}  // namespace rwkv
