// Samplers: the magic prime against the Pile primes in data/README.md "Token files and sample order" and a trial-division reference;
// one pass of the magic-prime order is a bijection onto the chunks; the data of each optimizer
// step is the same for 1, 2 and 4 ranks at the same global batch; ranks never share a sample;
// batches are the dataset's windows.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "data/batch.h"
#include "data/binidx.h"
#include "data/magic_prime_sampler.h"
#include "data/random_sampler.h"
#include "tests/support/test_util.h"

using namespace rwkv::data;

namespace {

bool trial_division_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

}  // namespace

TEST_CASE("Miller-Rabin agrees with trial division", "[data]") {
  for (uint64_t n = 0; n < 20000; ++n) REQUIRE(is_prime_u64(n) == trial_division_prime(n));
  for (uint64_t n = 4000000000ULL; n < 4000002000ULL; ++n) REQUIRE(is_prime_u64(n) == trial_division_prime(n));
  REQUIRE(is_prime_u64(18446744073709551557ULL));   // largest 64-bit prime
  REQUIRE_FALSE(is_prime_u64(3825123056546413051ULL));  // strong pseudoprime to bases 2..23
  REQUIRE_FALSE(is_prime_u64(18446744073709551615ULL));
}

TEST_CASE("magic primes of the Pile match data/README.md 'Token files and sample order'", "[data]") {
  // The Pile's binidx (GPT-NeoX-20B tokens) holds 332,115,325,534 tokens; data/README.md "Token files and sample order" lists the
  // reference's primes for it.
  const int64_t pile = 332115325534LL;
  const std::map<int64_t, uint64_t> expected{
      {1024, 324331313}, {2048, 162165671}, {4096, 81082817}, {8192, 40541399}};
  for (const auto& [ctx, p] : expected) {
    INFO("ctx_len " << ctx);
    REQUIRE(magic_prime(pile, ctx) == p);
  }
}

TEST_CASE("magic prime is the largest prime = 2 mod 3 below n/ctx - 1 (trial division)", "[data]") {
  for (int64_t n : {100000LL, 123457LL, 9999991LL, 54321000LL, 1000000007LL}) {
    for (int64_t ctx : {8, 64, 512, 1000}) {
      const double limit = static_cast<double>(n) / ctx - 1;
      if (limit < 300) continue;
      uint64_t q = static_cast<uint64_t>(std::ceil(limit)) - 1;  // largest integer below limit
      while (!(q % 3 == 2 && trial_division_prime(q))) --q;
      INFO("n " << n << " ctx " << ctx << " reference p " << q);
      if (static_cast<double>(q) / (static_cast<double>(n) / ctx) > 0.99)
        REQUIRE(magic_prime(n, ctx) == q);
      else
        REQUIRE_THROWS_WITH(magic_prime(n, ctx), Catch::Contains("0.99"));
    }
  }
  REQUIRE_THROWS_WITH(magic_prime(100, 64), Catch::Contains("need more data"));
  REQUIRE_THROWS_WITH(magic_prime(64 * 40, 64), Catch::Contains("0.99"));  // 39 windows: p = 29
}

TEST_CASE("one pass of the magic-prime order visits every chunk once", "[data]") {
  for (int64_t n_tokens : {int64_t{1} << 20, int64_t{3000017}, int64_t{40320} * 16 * 3}) {
    const int64_t ctx = 16;
    MagicPrimeSampler s(n_tokens, ctx);
    const uint64_t p = s.prime();
    std::vector<char> seen(p, 0);
    for (uint64_t g = 0; g < p; ++g) {
      const int64_t start = s.window_start(static_cast<int64_t>(g));
      REQUIRE(start % ctx == 0);
      const uint64_t chunk = static_cast<uint64_t>(start / ctx);
      REQUIRE(chunk < p);
      REQUIRE_FALSE(seen[chunk]);
      seen[chunk] = 1;
      REQUIRE(start + ctx + 1 <= n_tokens);
    }
    // The next pass repeats the order.
    for (uint64_t g = 0; g < 100; ++g) REQUIRE(s.window_start(static_cast<int64_t>(g + p)) == s.window_start(static_cast<int64_t>(g)));
  }
}

TEST_CASE("magic-prime window start follows the reference formula in exact arithmetic", "[data]") {
  // Pile-sized p: the product factor·ii³ needs ~90 bits; compare with a long-hand 128-bit
  // evaluation reducing only once at the end (exact because factor·ii³ < 2^128 here).
  MagicPrimeSampler s(332115325534LL, 1024);
  const uint64_t p = s.prime();
  const uint64_t factor = static_cast<uint64_t>(static_cast<double>(p) * (std::sqrt(5.0) - 1) / 2);
  REQUIRE(factor == 200447775ULL);  // ⌊324331313 · 0.6180339887…⌋ (Python: int(p*(sqrt(5)-1)/2))
  for (uint64_t ii : {1ULL, 2ULL, 40321ULL, 1000000ULL, 324331312ULL}) {
    const unsigned __int128 cube = static_cast<unsigned __int128>(ii) * ii * ii;
    const uint64_t expected = static_cast<uint64_t>((cube % p) * factor % p);
    REQUIRE(s.chunk_of_sample_number(ii) == expected);
    REQUIRE(s.window_start(static_cast<int64_t>(ii - 1)) == static_cast<int64_t>(expected) * 1024);
  }
}

TEST_CASE("each optimizer step reads the same windows for 1, 2 and 4 ranks; ranks are disjoint", "[data]") {
  MagicPrimeSampler magic(1 << 22, 128);
  RandomSampler random(1 << 22, 128, 1234);
  for (const Sampler* s : {static_cast<const Sampler*>(&magic), static_cast<const Sampler*>(&random)}) {
    // Global batch 16 as (world, accumulation, micro-batch).
    const std::vector<BatchLayout> layouts{{1, 16, 1}, {1, 4, 4}, {2, 8, 1}, {2, 2, 4}, {4, 4, 1}, {4, 1, 4}};
    for (int64_t step : {0, 1, 2519, 2520, 10000}) {
      std::multiset<int64_t> reference;
      for (size_t li = 0; li < layouts.size(); ++li) {
        const BatchLayout& l = layouts[li];
        REQUIRE(l.global_batch() == 16);
        std::multiset<int64_t> starts;
        std::set<int64_t> indices;
        std::vector<std::set<int64_t>> per_rank(l.world_size);
        for (int r = 0; r < l.world_size; ++r)
          for (int a = 0; a < l.accumulation; ++a)
            for (int64_t g : micro_batch_indices(l, step, a, r)) {
              REQUIRE(indices.insert(g).second);  // no index twice
              per_rank[r].insert(g);
              starts.insert(s->window_start(g));
            }
        REQUIRE(*indices.begin() == step * 16);
        REQUIRE(*indices.rbegin() == step * 16 + 15);
        if (li == 0) reference = starts;
        REQUIRE(starts == reference);
      }
    }
  }
  // Reference numbering: ii = 1 + epoch·40320 + idx·world + rank with idx the rank's own count.
  const BatchLayout l{4, 8, 2};  // world 4, micro-batch 8, accumulation 2: global batch 64
  const int64_t steps_per_epoch = kMiniEpochSamples / l.global_batch();
  for (int64_t epoch : {0, 3})
    for (int64_t s_in_epoch : {int64_t{0}, int64_t{7}, steps_per_epoch - 1})
      for (int a = 0; a < 2; ++a)
        for (int r = 0; r < 4; ++r)
          for (int b = 0; b < 8; ++b) {
            const int64_t idx = (s_in_epoch * 2 + a) * 8 + b;
            const int64_t ii = 1 + epoch * kMiniEpochSamples + idx * 4 + r;
            REQUIRE(global_sample_index(l, epoch * steps_per_epoch + s_in_epoch, a, r, b) + 1 == ii);
          }
  REQUIRE_THROWS_AS(global_sample_index(l, 0, 2, 0, 0), std::out_of_range);
  REQUIRE_THROWS_AS(global_sample_index(l, 0, 0, 4, 0), std::out_of_range);
}

TEST_CASE("random sampler is a pure, seeded, roughly uniform function of the index", "[data]") {
  const int64_t n = 10000, ctx = 99;
  RandomSampler a(n, ctx, 1), a2(n, ctx, 1), b(n, ctx, 2);
  std::vector<int64_t> hist(10, 0);
  int same = 0;
  for (int64_t g = 0; g < 100000; ++g) {
    const int64_t s = a.window_start(g);
    REQUIRE(s >= 0);
    REQUIRE(s + ctx + 1 <= n);
    REQUIRE(a2.window_start(g) == s);
    same += b.window_start(g) == s;
    ++hist[s * 10 / (n - ctx)];
  }
  REQUIRE(same < 100);  // different seeds: independent orders (expect ~10 coincidences)
  for (int64_t h : hist) REQUIRE(std::abs(h - 10000) < 600);  // ~6 standard deviations
  REQUIRE_THROWS_AS(RandomSampler(100, 100, 0), std::invalid_argument);
}

TEST_CASE("a batch holds the dataset's windows as inputs and shifted targets", "[data]") {
  rwkv::test::TempDir dir;
  {
    BinIdxWriter w(dir / "seq", BinIdxDType::i32);
    std::vector<int32_t> doc(100000);  // 3125 windows of 32: magic prime 3119
    for (int i = 0; i < 100000; ++i) doc[i] = i;  // token value = its position
    w.add_document(doc);
    w.finish();
  }
  BinIdxDataset ds(dir / "seq");
  MagicPrimeSampler s(ds.size(), 32);
  const std::vector<int64_t> idx{0, 5, 17, 3};
  const Batch b = make_batch(ds, s, idx);
  REQUIRE(b.tokens.sizes() == torch::IntArrayRef{4, 33});
  REQUIRE(b.inputs.sizes() == torch::IntArrayRef{4, 32});
  REQUIRE(b.tokens.dtype() == torch::kInt64);
  for (int r = 0; r < 4; ++r) {
    const int64_t start = s.window_start(idx[r]);
    for (int t = 0; t < 32; ++t) {
      REQUIRE(b.inputs[r][t].item<int64_t>() == start + t);
      REQUIRE(b.targets[r][t].item<int64_t>() == start + t + 1);
    }
  }
  MagicPrimeSampler too_big(1000000, 32);  // built for more tokens than the file holds
  int64_t g = 0;
  while (too_big.window_start(g) + 33 <= ds.size()) ++g;
  const std::vector<int64_t> bad{g};
  REQUIRE_THROWS_AS(make_batch(ds, too_big, bad), std::out_of_range);
}

TEST_CASE("a held-out tail: one magic-prime pass is the whole file's order without the windows reaching into it", "[data]") {
  // The reference: the whole file's order (checked against the formula above), filtered by hand.
  const int64_t ctx = 16;
  for (int64_t n : {int64_t{1} << 20, int64_t{3000017}}) {
    const MagicPrimeSampler whole(n, ctx);
    const uint64_t p = whole.prime();
    // Inside the tail the whole order never draws (p·ctx + 1 <= n), one window, 1%, a third, and
    // all but the first window.
    for (int64_t held : {int64_t{1}, n - static_cast<int64_t>(p) * ctx - 1, int64_t{ctx}, n / 100, n / 3,
                         n - ctx - 1}) {
      INFO("n " << n << ", held out " << held);
      const MagicPrimeSampler split(n, ctx, held);
      REQUIRE(split.prime() == p);
      std::vector<int64_t> want;
      for (uint64_t g = 0; g < p; ++g) {
        const int64_t start = whole.window_start(static_cast<int64_t>(g));
        if (start + ctx + 1 <= n - held) want.push_back(start);
      }
      REQUIRE(split.pass_length() == want.size());
      std::vector<char> seen(p, 0);
      for (size_t g = 0; g < want.size(); ++g) {
        const int64_t start = split.window_start(static_cast<int64_t>(g));
        REQUIRE(start == want[g]);
        REQUIRE(start + ctx + 1 <= n - held);  // never a held-out token, targets included
        REQUIRE_FALSE(seen[static_cast<size_t>(start / ctx)]);
        seen[static_cast<size_t>(start / ctx)] = 1;
      }
      // Every window before the tail is drawn once per pass, and the passes repeat.
      const auto kept = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(p), (n - held - 1) / ctx));
      REQUIRE(std::count(seen.begin(), seen.begin() + static_cast<std::ptrdiff_t>(kept), 1) == static_cast<int64_t>(kept));
      for (int64_t g : {int64_t{0}, int64_t{1}, static_cast<int64_t>(want.size()) - 1})
        REQUIRE(split.window_start(g + 3 * static_cast<int64_t>(want.size())) == want[static_cast<size_t>(g)]);
    }
  }
  REQUIRE_THROWS_WITH(MagicPrimeSampler(1 << 20, ctx, (1 << 20) - ctx), Catch::Contains("leaves no window"));
  REQUIRE_THROWS_AS(MagicPrimeSampler(1 << 20, ctx, 1 << 20), std::invalid_argument);
  REQUIRE_THROWS_AS(MagicPrimeSampler(1 << 20, ctx, -1), std::invalid_argument);
}

TEST_CASE("a held-out tail: the random sampler redraws only the windows reaching into it, uniformly", "[data]") {
  const int64_t n = 10000, ctx = 99, held = 2000;
  const RandomSampler whole(n, ctx, 7), split(n, ctx, 7, held);
  const int64_t kept = n - held - ctx;  // window starts before the tail
  std::vector<int64_t> hist(10, 0);
  int64_t redrawn = 0;
  for (int64_t g = 0; g < 100000; ++g) {
    const int64_t a = whole.window_start(g), b = split.window_start(g);
    REQUIRE(b >= 0);
    REQUIRE(b + ctx + 1 <= n - held);
    if (a < kept)
      REQUIRE(b == a);
    else
      ++redrawn;
    ++hist[b * 10 / kept];
  }
  // P(redraw) = (n - ctx - kept) / (n - ctx) = 2000/9901; the kept starts stay uniform.
  CHECK(std::abs(static_cast<double>(redrawn) / 100000 - 2000.0 / 9901) < 0.01);
  for (int64_t h : hist) REQUIRE(std::abs(h - 10000) < 600);
  REQUIRE_THROWS_WITH(RandomSampler(n, ctx, 7, n - ctx), Catch::Contains("before the held-out tail hold no window"));
  REQUIRE_THROWS_AS(RandomSampler(n, ctx, 7, n), std::invalid_argument);
}
