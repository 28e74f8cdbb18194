#pragma once
// The RWKV-4 language model (rwkv/README.md "Forward pass"): emb → blocks (ln0 in block 0) → ln_out → head.
// Its named_parameters() are exactly the reference state_dict (`emb.weight`,
// `blocks.0.ln0.weight`, `blocks.3.att.time_decay`, …, `ln_out.bias`, `head.weight`), in the
// reference's order, with the reference's shapes.
//
// The constructor creates the parameters uninitialised (torch::empty) on options' device and
// dtype: fill them with init_weights (rwkv/init.h) or load a checkpoint. On torch::kMeta nothing
// is allocated (used by `rwkv info` and parameter counting).
//
// bf16: convert the model (`model->to(torch::kBFloat16)`) and every activation, token-shift mix
// and the WKV input/output are bf16; WKV keeps its state and the decay in fp32 (kernels/README.md "WKV").
#include <torch/torch.h>

#include <vector>

#include "rwkv/block.h"
#include "rwkv/layers.h"
#include "rwkv/model_config.h"

namespace rwkv {

// The RNN-mode state of the whole model: one LayerState (5 vectors) per block. Make a fresh one
// with initial_state (rwkv/rnn.h).
using RnnState = std::vector<LayerState>;

class RWKVImpl : public torch::nn::Module {
 public:
  explicit RWKVImpl(const ModelConfig& config, const torch::TensorOptions& options = {});

  // tokens (B, T) int64 → logits (B, T, V), for a fresh sequence.
  torch::Tensor forward(const torch::Tensor& tokens);
  // The same, continuing from `state` (one LayerState per block), which is advanced past the last
  // token: prefill is forward(prompt, state) on an initial state, an RNN step is T = 1.
  torch::Tensor forward(const torch::Tensor& tokens, RnnState& state);
  // The two halves of forward(tokens, state): the output (B, T, D) of the first `blocks` blocks
  // (every block when negative) before ln_out, advancing their states, then ln_out and the head on
  // hidden states (..., D) → logits (..., V). Prefill (rwkv/rnn.h) runs the last block and the head
  // only where the state and the last position's logits need them.
  torch::Tensor hidden(const torch::Tensor& tokens, RnnState& state, int64_t blocks = -1);
  torch::Tensor logits(const torch::Tensor& hidden);

  const ModelConfig& config() const { return config_; }
  Block block(int64_t layer) const { return blocks_.at(layer); }

  Embedding emb{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  LayerNorm ln_out{nullptr};
  LinearNoBias head{nullptr};

 private:
  torch::Tensor run_blocks(const torch::Tensor& tokens, RnnState* state, size_t blocks);

  ModelConfig config_;
  std::vector<Block> blocks_;  // typed handles to the modules in `blocks`
};
TORCH_MODULE(RWKV);

// Total number of parameter elements (2VD + 13D²L + D(11L+4) for the default A = D, F = 4D).
int64_t parameter_count(const RWKVImpl& model);

// Forward FLOPs per token: 2 × the elements of every weight used in a matrix product (all 2-D
// parameters except the embedding, a lookup), = 2(13LD² + VD) for A = D, F = 4D (paper Table 2,
// rwkv/README.md "Shapes"). WKV, LayerNorm and the mixes are O(LD) and left out as the paper does.
int64_t forward_flops_per_token(const RWKVImpl& model);

}  // namespace rwkv
