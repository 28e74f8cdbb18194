#include "rwkv/rnn.h"

#include <algorithm>
#include <vector>

#include "rwkv/gates.h"
#include "rwkv/token_shift.h"
#include "rwkv/wkv.h"

namespace rwkv {

RnnState initial_state(const ModelConfig& config, int64_t batch, const torch::TensorOptions& options) {
  RnnState state(config.n_layer);
  for (auto& layer : state) {
    layer.att.prev_x = torch::zeros({batch, config.n_embd}, options);
    layer.att.wkv = wkv_initial_state(batch, config.att(), options.device());
    layer.ffn.prev_x = torch::zeros({batch, config.n_embd}, options);
  }
  return state;
}

torch::Tensor rnn_step(RWKV& model, const torch::Tensor& tokens, RnnState& state) {
  TORCH_CHECK(tokens.dim() == 1, "rnn_step takes one token per sequence (B), got ", tokens.sizes());
  torch::NoGradGuard no_grad;
  return model->forward(tokens.unsqueeze(1), state).squeeze(1);
}

namespace {

// The last block's output at the last position (B, D), advancing its state, as BlockImpl::forward
// with TimeMixImpl::forward and ChannelMixImpl::forward compute it for every position.
torch::Tensor last_block_at_end(Block& block, const torch::Tensor& input, LayerState& state) {
  const int64_t T = input.size(1);
  const torch::Tensor x = block->ln0 ? block->ln0(input) : input;
  const torch::Tensor a = block->ln1(x);
  TimeMix& att = block->att;
  // The WKV state after the last token depends on k and v at every position.
  const std::vector<torch::Tensor> kv = token_shift_mix(a, state.att.prev_x, {att->time_mix_k, att->time_mix_v});
  WkvOutput w = wkv(att->time_decay, att->time_first, att->key(kv[0]), att->value(kv[1]), state.att.wkv);
  // The rest at the tail: the last position and the one before it, whose ln2 output the channel
  // mix's token shift takes at the last position.
  const int64_t n = std::min<int64_t>(T, 2), from = T - n;
  const torch::Tensor prev_a = from > 0 ? a.select(1, from - 1) : state.att.prev_x;
  const torch::Tensor r = att->receptance(token_shift_mix(a.narrow(1, from, n), prev_a, {att->time_mix_r})[0]);
  const torch::Tensor tail = x.narrow(1, from, n) + att->output(sigmoid_gate(r, w.y.narrow(1, from, n)));
  state.att.prev_x = a.select(1, T - 1).contiguous();
  state.att.wkv = std::move(w.state);
  // With two positions the first one's channel mix reads the carried ln2 output instead of the
  // one at from − 1 (not computed): its output is wrong and dropped; the last one's is exact, and
  // the carried ln2 output becomes the last position's.
  return (tail + block->ffn(block->ln2(tail), &state.ffn)).select(1, n - 1);
}

}  // namespace

Prefill prefill(RWKV& model, const torch::Tensor& prompt) {
  const torch::Tensor emb = model->emb->weight;
  Prefill out{torch::Tensor(),
              initial_state(model->config(), prompt.size(0),
                            torch::TensorOptions().dtype(emb.dtype()).device(emb.device()))};
  out.logits = prefill_continue(model, prompt, out.state);
  return out;
}

torch::Tensor prefill_continue(RWKV& model, const torch::Tensor& tokens, RnnState& state) {
  torch::NoGradGuard no_grad;
  const int64_t L = model->config().n_layer;
  const torch::Tensor x = model->hidden(tokens, state, L - 1);
  Block last = model->block(L - 1);
  // ln_out and the head at the last position only: the others' predictions are never used.
  return model->logits(last_block_at_end(last, x, state[static_cast<size_t>(L - 1)]));
}

}  // namespace rwkv
