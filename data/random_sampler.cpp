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

RandomSampler::RandomSampler(int64_t n_tokens, int64_t ctx_len, uint64_t seed) : ctx_len_(ctx_len), seed_(seed) {
  if (ctx_len <= 0 || n_tokens < ctx_len + 1)
    throw std::invalid_argument(fmt::format("random sampler: {} tokens hold no window of ctx_len+1 = {}",
                                            n_tokens, ctx_len + 1));
  num_starts_ = static_cast<uint64_t>(n_tokens - ctx_len);
}

int64_t RandomSampler::window_start(int64_t global_index) const {
  if (global_index < 0) throw std::out_of_range("negative global sample index");
  // Multiply-shift maps 64 uniform bits onto [0, num_starts_); the bias is below
  // num_starts_/2^64 (< 1e-8 for any corpus below 1e11 tokens).
  const uint64_t h = hash_index(seed_, static_cast<uint64_t>(global_index));
  return static_cast<int64_t>((static_cast<unsigned __int128>(h) * num_starts_) >> 64);
}

}  // namespace rwkv::data
