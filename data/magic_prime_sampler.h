#pragma once
// The reference trainer's deterministic "magic prime" order (data/README.md "Token files and sample order"). With p the largest
// prime ≡ 2 (mod 3) below n_tokens/ctx_len − 1, sample number ii = g + 1 starts at chunk
// (⌊p·φ⌋·ii³ mod p), φ = (√5−1)/2, i.e. at token chunk·ctx_len. Cubing permutes Z_p when
// p ≡ 2 (mod 3), so ii = 1 … p visit every chunk 0 … p−1 exactly once; the order repeats with
// period p. The seed plays no part (the order is fixed by the token count and ctx_len).
//
// A held-out tail (validation.split_tokens, data/README.md "Held-out split"): the prime and the
// order stay those of the whole file, and the samples whose window would reach into the last
// `held_out` tokens are skipped, so the training order is the whole file's order with those
// windows left out. One pass is then p − K samples (K windows skipped) and repeats.
#include <cstdint>
#include <vector>

#include "data/sampler.h"

namespace rwkv::data {

// Samples per mini-epoch in the reference (trainer/README.md "Optimizer and schedule").
inline constexpr int64_t kMiniEpochSamples = 40320;

// Deterministic Miller–Rabin for all 64-bit n.
bool is_prime_u64(uint64_t n);

// Largest prime p ≡ 2 (mod 3) with p < n_tokens/ctx_len − 1 (real division, as the reference);
// throws std::invalid_argument when the data is too small for one (fewer than ~3 windows) or
// when p/(n_tokens/ctx_len) ≤ 0.99 (only possible for tiny data).
uint64_t magic_prime(int64_t n_tokens, int64_t ctx_len);

class MagicPrimeSampler final : public Sampler {
 public:
  // Throws std::invalid_argument when held_out is negative or leaves no window of ctx_len + 1
  // tokens before it.
  MagicPrimeSampler(int64_t n_tokens, int64_t ctx_len, int64_t held_out = 0);
  int64_t window_start(int64_t global_index) const override;
  int64_t ctx_len() const override { return ctx_len_; }
  uint64_t prime() const { return p_; }
  // Samples before the order repeats: p minus the windows skipped for the held-out tail.
  uint64_t pass_length() const { return p_ - skipped_.size(); }
  // Chunk index (window_start / ctx_len) of reference sample number ii ≥ 1.
  uint64_t chunk_of_sample_number(uint64_t ii) const;

 private:
  int64_t ctx_len_;
  uint64_t p_, factor_;
  // The skipped positions t_k in a pass of sample numbers 1 … p (sorted), stored as t_k − k − 1:
  // the number of kept samples before t_k, so the j-th kept one is j + 1 + (entries ≤ j).
  std::vector<uint64_t> skipped_;
};

}  // namespace rwkv::data
