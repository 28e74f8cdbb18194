// The chunked (time-parallel) WKV forward of kernels/wkv_math.h — chunk summaries from the empty
// state, a scan with advance(), a second pass from each chunk's start state — against the
// sequential recurrence, in double, through the same header the CUDA kernels include; and the
// CUDA kernel built on it (RWKV_WKV_CHUNK) against the sequential kernel, on a GPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/wkv_math.h"
#include "rwkv/wkv.h"
#include "tests/support/test_util.h"

namespace {

namespace wkv = rwkv::kernels::wkv;
using State = wkv::State<double>;

struct Channel {
  double w, u;
  std::vector<double> k, v;
};

Channel random_channel(int64_t T, double k_max, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> decay(-8, 3), first(-3, 3), key(-k_max, k_max);
  std::normal_distribution<double> value;
  Channel c{-std::exp(decay(gen)), first(gen), {}, {}};
  for (int64_t t = 0; t < T; ++t) {
    c.k.push_back(key(gen));
    c.v.push_back(value(gen));
  }
  return c;
}

struct Run {
  std::vector<double> y;
  State final_state;
};

Run sequential(const Channel& c, State s) {
  Run r;
  for (size_t t = 0; t < c.k.size(); ++t) r.y.push_back(wkv::forward_step(s, c.w, c.u, c.k[t], c.v[t]));
  r.final_state = s;
  return r;
}

// The three phases, with a sequential scan over the chunks.
Run chunked(const Channel& c, const State& initial, int64_t n) {
  const int64_t T = static_cast<int64_t>(c.k.size());
  std::vector<State> summary;
  std::vector<int64_t> length;
  for (int64_t t0 = 0; t0 < T; t0 += n) {
    State s = wkv::empty_state<double>();
    for (int64_t t = t0; t < std::min(T, t0 + n); ++t) wkv::update(s, c.w, c.k[t], c.v[t]);
    summary.push_back(s);
    length.push_back(std::min(T, t0 + n) - t0);
  }
  std::vector<State> start{initial};
  for (size_t j = 0; j < summary.size(); ++j)
    start.push_back(wkv::advance(start[j], c.w, static_cast<double>(length[j]), summary[j]));
  Run r;
  for (size_t j = 0; j < summary.size(); ++j) {
    State s = start[j];
    for (int64_t t = static_cast<int64_t>(j) * n; t < static_cast<int64_t>(j) * n + length[j]; ++t)
      r.y.push_back(wkv::forward_step(s, c.w, c.u, c.k[t], c.v[t]));
  }
  r.final_state = start.back();
  return r;
}

// (A, B) of two states agree relative to their size: compared at the larger exponent.
void check_same_state(const State& a, const State& b) {
  const double m = std::max(a.pp, b.pp);
  const double sa = std::exp(a.pp - m), sb = std::exp(b.pp - m);
  CHECK(a.bb * sa == Approx(b.bb * sb).epsilon(1e-11));
  CHECK(a.aa * sa == Approx(b.aa * sb).epsilon(1e-11).margin(1e-11 * b.bb * sb));
}

}  // namespace

TEST_CASE("chunked WKV forward equals the sequential recurrence in double (y and final state)", "[kernels]") {
  const int64_t T = 103;
  for (const double k_max : {1.0, 30.0}) {
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      const Channel c = random_channel(T, k_max, seed);
      const Run carried = sequential(random_channel(9, k_max, seed + 100), wkv::empty_state<double>());
      for (const State& initial : {wkv::empty_state<double>(), carried.final_state}) {
        const Run ref = sequential(c, initial);
        for (const int64_t n : {1, 7, 16, 103, 250}) {
          INFO("k_max " << k_max << " seed " << seed << " chunk " << n << " initial pp " << initial.pp);
          const Run got = chunked(c, initial, n);
          REQUIRE(got.y.size() == ref.y.size());
          for (int64_t t = 0; t < T; ++t) CHECK(got.y[t] == Approx(ref.y[t]).epsilon(1e-11).margin(1e-12));
          check_same_state(got.final_state, ref.final_state);
        }
      }
    }
  }
}

TEST_CASE("chunk summaries combine associatively: a tree scan gives the sequential final state", "[kernels]") {
  const Channel c = random_channel(64, 20.0, 7);
  // Leaves: one token each (length 1, its own update from empty); combine neighbours pairwise.
  struct Piece {
    double n;
    State s;
  };
  std::vector<Piece> level;
  for (size_t t = 0; t < c.k.size(); ++t) {
    State s = wkv::empty_state<double>();
    wkv::update(s, c.w, c.k[t], c.v[t]);
    level.push_back({1, s});
  }
  while (level.size() > 1) {
    std::vector<Piece> next;
    for (size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back({level[i].n + level[i + 1].n, wkv::advance(level[i].s, c.w, level[i + 1].n, level[i + 1].s)});
    if (level.size() % 2) next.push_back(level.back());
    level = next;
  }
  check_same_state(level.front().s, sequential(c, wkv::empty_state<double>()).final_state);
}

TEST_CASE("chunked CUDA forward (RWKV_WKV_CHUNK) equals the sequential kernel", "[kernels][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  torch::manual_seed(5);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA);
  const torch::Tensor td = torch::rand({96}, f32) * 11 - 8, tf = torch::rand({96}, f32) * 6 - 3;
  const torch::Tensor k = (torch::rand({2, 1000, 96}, f32) * 2 - 1) * 30, v = torch::randn({2, 1000, 96}, f32);
  const auto carried = rwkv::wkv(td, tf, k.narrow(1, 0, 37), v.narrow(1, 0, 37)).state;
  const auto run = [&](const char* chunk) {
    setenv("RWKV_WKV_CHUNK", chunk, 1);
    auto out = rwkv::wkv(td, tf, k, v, carried);
    unsetenv("RWKV_WKV_CHUNK");
    return out;
  };
  const auto ref = run("0");
  for (const char* chunk : {"1", "64", "333"}) {
    INFO("chunk " << chunk);
    const auto got = run(chunk);
    // Same arithmetic in another order: a few fp32 ulps, compounded over the chunk scan.
    CHECK(((got.y - ref.y).abs().max() / ref.y.abs().max()).item<double>() < 1e-5);
    const torch::Tensor m = torch::maximum(got.state.pp, ref.state.pp);
    const torch::Tensor bg = got.state.bb * torch::exp(got.state.pp - m), br = ref.state.bb * torch::exp(ref.state.pp - m);
    CHECK(((bg - br).abs() / br.abs()).max().item<double>() < 1e-5);
  }
}
