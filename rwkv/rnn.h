#pragma once
// RNN (inference) mode of RWKV-4 (kernels/README.md "WKV"): the model carries 5 vectors per layer from token
// to token (previous ln1 output, aa, bb, pp, previous ln2 output) and costs O(1) per token.
// A step is the model's forward with T = 1 on the carried state, so RNN mode, prefill and the
// parallel forward share one code path and one WKV (rwkv::wkv); tests/rwkv/test_model_rnn.cpp checks
// them against an independent per-token evaluation.
#include <torch/torch.h>

#include "rwkv/model.h"

namespace rwkv {

// The state before any token: zero previous inputs (the token shift's zero pad) in
// `options`' dtype and device, and the empty WKV state (aa = bb = 0, pp = −1e38) in fp32.
RnnState initial_state(const ModelConfig& config, int64_t batch, const torch::TensorOptions& options);

// One token per sequence: tokens (B) int64 → logits (B, V); advances `state`. No autograd.
torch::Tensor rnn_step(RWKV& model, const torch::Tensor& tokens, RnnState& state);

struct Prefill {
  torch::Tensor logits;  // (B, V): the prediction after the prompt's last token
  RnnState state;        // continues the sequence with rnn_step
};

// Runs a prompt (B, T) in parallel mode from the initial state (prefill_continue). No autograd.
Prefill prefill(RWKV& model, const torch::Tensor& prompt);

// Runs tokens (B, T) in parallel mode continuing `state`, which is advanced past the last token,
// and returns the logits after it (B, V): a prompt, or one chunk of a long one. Only what the
// logits and the state need is computed: the head at the last position, and in the last block
// the key, value and WKV over every position (its state) but the receptance, output, gate and
// channel mix at the last two only (the channel mix's token shift at the last position reads the
// one before it) — about 11 of the 13 D² products of one block per token, 7% of a 12-layer
// model's block GEMMs. Same logits and state as forward(tokens, state) (tests/rwkv/test_model_rnn.cpp).
// No autograd.
torch::Tensor prefill_continue(RWKV& model, const torch::Tensor& tokens, RnnState& state);

}  // namespace rwkv
