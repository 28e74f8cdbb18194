#pragma once
// Text generation in RNN mode (kernels/README.md "WKV", paper §4 "inference"): the prompt runs once in parallel
// mode (prefill), then each new token is one rnn_step on the carried state, so the cost and the
// memory per generated token stay constant however long the text grows (the paper's claim C5).
// Used by `rwkv generate` and by `rwkv train`'s closing sample.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "rwkv/model.h"

namespace rwkv::trainer {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax)
  double top_p = 1.0;        // nucleus: sample among the most likely tokens holding ≥ top_p mass
  uint64_t seed = 0;         // the sampler's own generator: same seed, same text
};

// Throws std::invalid_argument naming the option when temperature < 0 or top_p ∉ (0, 1].
void check_sampling_options(const SamplingOptions& options);

// Picks the next token from `logits` (V, any float dtype, any device); the options are checked.
// Greedy when temperature is 0; otherwise softmax(logits / temperature) cut to the smallest
// most-likely set whose mass reaches top_p (the first token always stays, so a tiny top_p is
// greedy; ties keep the lower id, as argmax does), renormalised, and sampled with `generator` (a
// CPU generator).
int64_t sample_token(const torch::Tensor& logits, const SamplingOptions& options, at::Generator& generator);

// Bytes of the RNN state (every tensor of every layer): what the model carries between tokens.
int64_t state_bytes(const RnnState& state);

struct GenerationProgress {
  int64_t generated = 0;      // tokens generated so far (this one included)
  int64_t token = 0;          // the token just chosen
  const RnnState* state = nullptr;  // the state after feeding it
};

struct Generation {
  std::vector<int64_t> tokens;  // the generated tokens (the prompt not included)
  double prefill_seconds = 0, decode_seconds = 0;
};

// Prefills `prompt` (non-empty; ids < V), then generates `max_tokens` tokens one RNN step each.
// `on_token` (optional) sees every chosen token after it has been fed to the model.
Generation generate(RWKV& model, const std::vector<int64_t>& prompt, int64_t max_tokens,
                    const SamplingOptions& options,
                    const std::function<void(const GenerationProgress&)>& on_token = {});

}  // namespace rwkv::trainer
