#include "rwkv/time_mix.h"

#include "rwkv/gates.h"
#include "rwkv/token_shift.h"

namespace rwkv {

TimeMixImpl::TimeMixImpl(const ModelConfig& config, const torch::TensorOptions& options) {
  const int64_t D = config.n_embd, A = config.att();
  time_decay = register_parameter("time_decay", torch::empty({A}, options));
  time_first = register_parameter("time_first", torch::empty({A}, options));
  time_mix_k = register_parameter("time_mix_k", torch::empty({1, 1, D}, options));
  time_mix_v = register_parameter("time_mix_v", torch::empty({1, 1, D}, options));
  time_mix_r = register_parameter("time_mix_r", torch::empty({1, 1, D}, options));
  key = register_module("key", LinearNoBias(D, A, options));
  value = register_module("value", LinearNoBias(D, A, options));
  receptance = register_module("receptance", LinearNoBias(D, A, options));
  output = register_module("output", LinearNoBias(A, D, options));
}

torch::Tensor TimeMixImpl::forward(const torch::Tensor& x, TimeMixState* state) {
  const std::vector<torch::Tensor> mixed =
      token_shift_mix(x, state ? state->prev_x : torch::Tensor(), {time_mix_k, time_mix_v, time_mix_r});
  const torch::Tensor k = key(mixed[0]);
  const torch::Tensor v = value(mixed[1]);
  const torch::Tensor r = receptance(mixed[2]);
  WkvOutput wkv_out = state ? wkv(time_decay, time_first, k, v, state->wkv)
                            : wkv(time_decay, time_first, k, v);
  if (state) {
    state->prev_x = x.select(1, x.size(1) - 1).contiguous();
    state->wkv = std::move(wkv_out.state);
  }
  return output(sigmoid_gate(r, wkv_out.y));
}

}  // namespace rwkv
