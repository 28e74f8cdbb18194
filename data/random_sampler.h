#pragma once
// Seeded uniform sampling of window starts in [0, n_tokens − ctx_len − 1], a pure function of
// (global sample index, seed): a counter-based hash (SplitMix64's finaliser applied twice, over
// seed and index), not a stateful RNG, so any sample can be recomputed without replaying others.
//
// A held-out tail (validation.split_tokens, data/README.md "Held-out split"): a sample whose
// window would reach into the last `held_out` tokens is drawn again, once, from a second hash
// stream uniformly over the windows before the tail. Every other sample keeps its window, and the
// kept windows stay uniform.
#include <cstdint>

#include "data/sampler.h"

namespace rwkv::data {

// 64 well-mixed bits from (seed, index).
uint64_t hash_index(uint64_t seed, uint64_t index);

class RandomSampler final : public Sampler {
 public:
  // Throws std::invalid_argument when the data before the held-out tail holds no window of
  // ctx_len+1 tokens.
  RandomSampler(int64_t n_tokens, int64_t ctx_len, uint64_t seed, int64_t held_out = 0);
  int64_t window_start(int64_t global_index) const override;
  int64_t ctx_len() const override { return ctx_len_; }

 private:
  int64_t ctx_len_;
  uint64_t num_starts_, kept_starts_, seed_;
};

}  // namespace rwkv::data
