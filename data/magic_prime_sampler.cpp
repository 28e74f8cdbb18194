#include "data/magic_prime_sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace rwkv::data {
namespace {

using u128 = unsigned __int128;

uint64_t mul_mod(uint64_t a, uint64_t b, uint64_t m) { return static_cast<uint64_t>(u128{a} * b % m); }

uint64_t pow_mod(uint64_t a, uint64_t e, uint64_t m) {
  uint64_t r = 1 % m;
  a %= m;
  for (; e; e >>= 1) {
    if (e & 1) r = mul_mod(r, a, m);
    a = mul_mod(a, a, m);
  }
  return r;
}

}  // namespace

bool is_prime_u64(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t q : {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37}) {
    if (n % q == 0) return n == q;
  }
  uint64_t d = n - 1;
  int s = 0;
  while ((d & 1) == 0) d >>= 1, ++s;
  // These 12 bases decide primality for every n < 3.3e24 (Sorenson & Webster 2015).
  for (uint64_t a : {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37}) {
    uint64_t x = pow_mod(a, d, n);
    if (x == 1 || x == n - 1) continue;
    bool composite = true;
    for (int i = 1; i < s && composite; ++i) {
      x = mul_mod(x, x, n);
      if (x == n - 1) composite = false;
    }
    if (composite) return false;
  }
  return true;
}

uint64_t magic_prime(int64_t n_tokens, int64_t ctx_len) {
  if (ctx_len <= 0 || n_tokens <= 0)
    throw std::invalid_argument(fmt::format("magic prime: need n_tokens > 0 and ctx_len > 0 (got {}, {})",
                                            n_tokens, ctx_len));
  const long double chunks = static_cast<long double>(n_tokens) / static_cast<long double>(ctx_len);
  // Largest integer strictly below chunks − 1.
  const long double limit = chunks - 1;
  if (limit <= 2)
    throw std::invalid_argument(fmt::format(
        "magic prime: {} tokens hold only {:.2f} windows of ctx_len {}; need more data", n_tokens,
        static_cast<double>(chunks), ctx_len));
  uint64_t c = static_cast<uint64_t>(std::ceil(limit)) - 1;
  for (; c >= 2; --c)
    if (c % 3 == 2 && is_prime_u64(c)) break;
  if (c < 2) throw std::invalid_argument("magic prime: none found");
  if (static_cast<long double>(c) / chunks <= 0.99L)
    throw std::invalid_argument(fmt::format(
        "magic prime {} covers only {:.3f} of the {:.0f} windows of ctx_len {} (the reference requires "
        "> 0.99): the data is too small for this ctx_len",
        c, static_cast<double>(c / chunks), static_cast<double>(chunks), ctx_len));
  return c;
}

MagicPrimeSampler::MagicPrimeSampler(int64_t n_tokens, int64_t ctx_len, int64_t held_out)
    : ctx_len_(ctx_len), p_(magic_prime(n_tokens, ctx_len)) {
  // ⌊p·φ⌋ with φ = (√5−1)/2 in double, as the reference computes it (p < 2^53 for any real data).
  factor_ = static_cast<uint64_t>(static_cast<double>(p_) * ((std::sqrt(5.0) - 1.0) / 2.0));
  if (held_out < 0 || held_out >= n_tokens)
    throw std::invalid_argument(fmt::format("magic prime: a held-out tail of {} tokens out of {}", held_out, n_tokens));
  if (held_out == 0) return;
  // Chunk c's window [c·T, c·T + T] ends before the tail when c < (n − held_out − 1) / T.
  const uint64_t kept_chunks = static_cast<uint64_t>((n_tokens - held_out - 1) / ctx_len);
  if (kept_chunks == 0)
    throw std::invalid_argument(fmt::format("magic prime: holding out the last {} of {} tokens leaves no window of "
                                            "ctx_len+1 = {} tokens to train on",
                                            held_out, n_tokens, ctx_len + 1));
  // The sample number of chunk c ≥ 1 inverts c = factor·x³ (mod p): x = (c/factor)^d with
  // d = (2p − 1)/3 = 3⁻¹ mod (p − 1), which exists because p ≡ 2 (mod 3) (x³ is then a bijection).
  const uint64_t inverse_factor = pow_mod(factor_, p_ - 2, p_);
  const uint64_t cube_root = (2 * p_ - 1) / 3;
  for (uint64_t c = kept_chunks; c < p_; ++c) skipped_.push_back(pow_mod(mul_mod(c, inverse_factor, p_), cube_root, p_));
  std::sort(skipped_.begin(), skipped_.end());
  for (size_t k = 0; k < skipped_.size(); ++k) skipped_[k] -= k + 1;
}

uint64_t MagicPrimeSampler::chunk_of_sample_number(uint64_t ii) const {
  const uint64_t x = ii % p_;
  return mul_mod(factor_, mul_mod(mul_mod(x, x, p_), x, p_), p_);
}

int64_t MagicPrimeSampler::window_start(int64_t global_index) const {
  if (global_index < 0) throw std::out_of_range("negative global sample index");
  // The j-th kept sample of its pass has number t = j + 1 + (skipped ones before it); without a
  // held-out tail t ≡ g + 1 (mod p), the reference's ii = g + 1.
  const uint64_t j = static_cast<uint64_t>(global_index) % pass_length();
  const uint64_t t = j + 1 + static_cast<uint64_t>(std::upper_bound(skipped_.begin(), skipped_.end(), j) - skipped_.begin());
  return static_cast<int64_t>(chunk_of_sample_number(t)) * ctx_len_;
}

}  // namespace rwkv::data
