#include "rwkv/rnn.h"

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

Prefill prefill(RWKV& model, const torch::Tensor& prompt) {
  torch::NoGradGuard no_grad;
  const torch::Tensor emb = model->emb->weight;
  Prefill out{torch::Tensor(),
              initial_state(model->config(), prompt.size(0),
                            torch::TensorOptions().dtype(emb.dtype()).device(emb.device()))};
  // ln_out and the head at the last position only: the others' predictions are never used.
  out.logits = model->logits(model->hidden(prompt, out.state).select(1, prompt.size(1) - 1));
  return out;
}

}  // namespace rwkv
