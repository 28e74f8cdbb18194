#include "data/random_sampler.h"

#include <fmt/format.h>

#include <stdexcept>

namespace rwkv::data {
namespace {

uint64_t mix(uint64_t z) {  // SplitMix64 finaliser (Steele, Lea, Flood 2014)
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t hash_index(uint64_t seed, uint64_t index) {
  return mix(mix(seed + 0x9e3779b97f4a7c15ULL) ^ (index * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL));
}

namespace {

// Multiply-shift maps 64 uniform bits onto [0, n); the bias is below n/2^64 (< 1e-8 for any
// corpus below 1e11 tokens).
uint64_t below(uint64_t h, uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(h) * n) >> 64); }

}  // namespace

RandomSampler::RandomSampler(int64_t n_tokens, int64_t ctx_len, uint64_t seed, int64_t held_out)
    : ctx_len_(ctx_len), seed_(seed) {
  if (held_out < 0 || (held_out > 0 && held_out >= n_tokens))
    throw std::invalid_argument(fmt::format("random sampler: a held-out tail of {} tokens out of {}", held_out, n_tokens));
  if (ctx_len <= 0 || n_tokens - held_out < ctx_len + 1)
    throw std::invalid_argument(fmt::format("random sampler: {} tokens{} hold no window of ctx_len+1 = {}",
                                            n_tokens - held_out, held_out > 0 ? " before the held-out tail" : "",
                                            ctx_len + 1));
  num_starts_ = static_cast<uint64_t>(n_tokens - ctx_len);
  kept_starts_ = static_cast<uint64_t>(n_tokens - held_out - ctx_len);
}

int64_t RandomSampler::window_start(int64_t global_index) const {
  if (global_index < 0) throw std::out_of_range("negative global sample index");
  const auto g = static_cast<uint64_t>(global_index);
  const uint64_t start = below(hash_index(seed_, g), num_starts_);
  if (start < kept_starts_) return static_cast<int64_t>(start);
  // The redraw's stream: another seed derived from this one (the index ~0 is never a sample's).
  return static_cast<int64_t>(below(hash_index(hash_index(seed_, ~uint64_t{0}), g), kept_starts_));
}

}  // namespace rwkv::data
