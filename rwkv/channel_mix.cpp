#include "rwkv/channel_mix.h"

#include "rwkv/gates.h"
#include "rwkv/token_shift.h"

namespace rwkv {

ChannelMixImpl::ChannelMixImpl(const ModelConfig& config, const torch::TensorOptions& options) {
  const int64_t D = config.n_embd, F = config.ffn();
  time_mix_k = register_parameter("time_mix_k", torch::empty({1, 1, D}, options));
  time_mix_r = register_parameter("time_mix_r", torch::empty({1, 1, D}, options));
  key = register_module("key", LinearNoBias(D, F, options));
  receptance = register_module("receptance", LinearNoBias(D, D, options));
  value = register_module("value", LinearNoBias(F, D, options));
}

torch::Tensor ChannelMixImpl::forward(const torch::Tensor& x, ChannelMixState* state) {
  const std::vector<torch::Tensor> mixed =
      token_shift_mix(x, state ? state->prev_x : torch::Tensor(), {time_mix_k, time_mix_r});
  const torch::Tensor k = relu_square(key(mixed[0]));
  const torch::Tensor r = receptance(mixed[1]);
  if (state) state->prev_x = x.select(1, x.size(1) - 1).contiguous();
  return sigmoid_gate(r, value(k));
}

}  // namespace rwkv
