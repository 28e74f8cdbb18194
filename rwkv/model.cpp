#include "rwkv/model.h"

namespace rwkv {

RWKVImpl::RWKVImpl(const ModelConfig& config, const torch::TensorOptions& options)
    : config_(config) {
  TORCH_CHECK(config.n_layer > 0 && config.n_embd > 0 && config.vocab_size > 0 &&
                  config.att() > 0 && config.ffn() > 0,
              "invalid model shape: n_layer ", config.n_layer, ", n_embd ", config.n_embd,
              ", vocab_size ", config.vocab_size);
  const int64_t D = config.n_embd, V = config.vocab_size;
  emb = register_module("emb", Embedding(V, D, options));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t l = 0; l < config.n_layer; ++l) {
    blocks_.push_back(Block(config, l, options));
    blocks->push_back(blocks_.back());
  }
  ln_out = register_module("ln_out", LayerNorm(D, options));
  head = register_module("head", LinearNoBias(D, V, options));
}

torch::Tensor RWKVImpl::forward(const torch::Tensor& tokens) { return logits(run_blocks(tokens, nullptr, blocks_.size())); }

torch::Tensor RWKVImpl::forward(const torch::Tensor& tokens, RnnState& state) { return logits(hidden(tokens, state)); }

torch::Tensor RWKVImpl::hidden(const torch::Tensor& tokens, RnnState& state, int64_t blocks) {
  TORCH_CHECK(static_cast<int64_t>(state.size()) == config_.n_layer, "RNN state has ",
              state.size(), " layers, the model ", config_.n_layer);
  TORCH_CHECK(blocks <= config_.n_layer, "hidden: ", blocks, " blocks of ", config_.n_layer);
  return run_blocks(tokens, &state, blocks < 0 ? blocks_.size() : static_cast<size_t>(blocks));
}

torch::Tensor RWKVImpl::logits(const torch::Tensor& hidden) { return head(ln_out(hidden)); }

torch::Tensor RWKVImpl::run_blocks(const torch::Tensor& tokens, RnnState* state, size_t blocks) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) > 0, "tokens must be (B, T) with T >= 1, got ",
              tokens.sizes());
  torch::Tensor x = emb(tokens);
  for (size_t l = 0; l < blocks; ++l) x = blocks_[l](x, state ? &(*state)[l] : nullptr);
  return x;
}

int64_t parameter_count(const RWKVImpl& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

int64_t forward_flops_per_token(const RWKVImpl& model) {
  int64_t macs = 0;
  for (const auto& p : model.named_parameters()) {
    if (p.value().dim() == 2 && p.key() != "emb.weight") macs += p.value().numel();
  }
  return 2 * macs;
}

}  // namespace rwkv
