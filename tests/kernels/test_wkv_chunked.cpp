// The chunked (time-parallel) WKV forward of kernels/wkv_math.h — chunk summaries from the empty
// state, a scan with advance(), a second pass from each chunk's start state — against the
// sequential recurrence, in double, through the same header the CUDA kernels include; and the
// CUDA kernel built on it (RWKV_WKV_CHUNK) against the sequential kernel and the CPU op, fp32 and
// bf16 I/O, on a GPU.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/wkv_math.h"
#include "kernels/wkv_op.h"
#include "rwkv/wkv.h"
#include "tests/kernels/wkv_reference.h"
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
    // The same sums in another order, each within the fp32 bound of tests/kernels/wkv_reference.h
    // of the exact value, so within twice that of each other: 2·8·2^-24·min(T, n_eff) ≈ 9.5e-4
    // here (time_decay -8 holds the whole T = 1000). Most of it is the sequential kernel's: adding
    // a decay as weak as -3.4e-4 to an exponent pp ≈ 30 rounds it by up to half an ulp of pp every
    // step, which the chunked form, adding n·w once per chunk, avoids. Measured with the host-run
    // kernels on inputs drawn alike: y within 2.3e-5, B within 3.4e-4 (chunk 64).
    const double tol = 2 * rwkv::test::wkv::fp32_tolerance(1000, -8);
    CHECK(((got.y - ref.y).abs().max() / ref.y.abs().max()).item<double>() < tol);
    const torch::Tensor m = torch::maximum(got.state.pp, ref.state.pp);
    const torch::Tensor bg = got.state.bb * torch::exp(got.state.pp - m), br = ref.state.bb * torch::exp(ref.state.pp - m);
    CHECK(((bg - br).abs() / br.abs()).max().item<double>() < tol);
  }
}

TEST_CASE("the CUDA op chooses the chunked kernels for a long sequence of few channels by default", "[kernels][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  torch::manual_seed(6);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA);
  const torch::Tensor td = torch::rand({64}, f32) * 11 - 8, tf = torch::rand({64}, f32) * 6 - 3;
  const torch::Tensor k = (torch::rand({1, 4096, 64}, f32) * 2 - 1) * 30, v = torch::randn({1, 4096, 64}, f32);
  unsetenv("RWKV_WKV_CHUNK");
  // 64 threads walking 4096 steps: kernels/wkv_schedule.h chunks it on any GPU.
  const int64_t chunk = rwkv::kernels::wkv_chunk_cuda(k);
  INFO("policy chunk " << chunk);
  REQUIRE(chunk > 0);
  const auto chosen = rwkv::wkv(td, tf, k, v);
  setenv("RWKV_WKV_CHUNK", "0", 1);
  CHECK(rwkv::kernels::wkv_chunk_cuda(k) == 0);
  const auto sequential = rwkv::wkv(td, tf, k, v);
  unsetenv("RWKV_WKV_CHUNK");
  const double tol = 2 * rwkv::test::wkv::fp32_tolerance(4096, -8);
  CHECK(((chosen.y - sequential.y).abs().max() / sequential.y.abs().max()).item<double>() < tol);
}

namespace {

// One bf16 run through the autograd op on `device`: y, the final state, and the gradients of
// L = Σ r·y + Σ g_aa·aa_T + Σ g_bb·bb_T for fixed cotangents (so every run's backward gets the
// same ∂L/∂y and ∂L/∂state whatever its forward computed). Everything comes back on the CPU.
struct Bf16Run {
  torch::Tensor y, aa, bb, pp;                             // forward
  torch::Tensor td, tf, k, v, aa0, bb0, pp0;               // gradients
};

struct Bf16Problem {
  torch::Tensor td, tf, k, v;      // fp32 parameters (as the model keeps them), bf16 k and v
  rwkv::WkvState carried;          // fp32, from a 37-token prefix
  torch::Tensor r, g_aa, g_bb;     // cotangents; r is bf16-representable, so ∂L/∂y is exactly r
};

Bf16Run bf16_run(const Bf16Problem& p, const torch::Device& device, const char* chunk) {
  const auto leaf = [&](const torch::Tensor& t) { return t.to(device, /*non_blocking=*/false, /*copy=*/true).requires_grad_(true); };
  torch::Tensor td = leaf(p.td), tf = leaf(p.tf), k = leaf(p.k), v = leaf(p.v);
  torch::Tensor aa0 = leaf(p.carried.aa), bb0 = leaf(p.carried.bb), pp0 = leaf(p.carried.pp);
  setenv("RWKV_WKV_CHUNK", chunk, 1);
  const auto out = rwkv::wkv(td, tf, k, v, rwkv::WkvState{aa0, bb0, pp0});
  unsetenv("RWKV_WKV_CHUNK");
  REQUIRE(out.y.scalar_type() == torch::kBFloat16);
  const auto f64 = [&](const torch::Tensor& t, const torch::Tensor& c) { return (t.to(torch::kFloat64) * c.to(device)).sum(); };
  (f64(out.y, p.r) + f64(out.state.aa, p.g_aa) + f64(out.state.bb, p.g_bb)).backward();
  return Bf16Run{out.y.detach().cpu(),  out.state.aa.detach().cpu(), out.state.bb.detach().cpu(),
                 out.state.pp.detach().cpu(), td.grad().cpu(), tf.grad().cpu(), k.grad().cpu(), v.grad().cpu(),
                 aa0.grad().cpu(), bb0.grad().cpu(), pp0.grad().cpu()};
}

// A bf16 output against a reference from the same inputs: both are fp32 values f_g, f_r rounded to
// bf16 (8 significant bits: an error of at most 2^-8 of the value each). With |f_g − f_r| ≤ δ,
// |got − ref| ≤ 2^-8·(|f_g| + |f_r|) + δ ≤ 2^-7·|ref| + 2δ (to first order): at most one bf16 step
// apart. δ: `fp32_rel` (the bound between two fp32 paths, below) times the reference's largest
// element. Returns the elements over that bound and the fraction that came out bit-identical (a
// flip needs the fp32 values to straddle a rounding midpoint: rare; a systematic error such as a
// chunk started from the wrong state moves every element of that chunk).
struct Bf16Agreement {
  int64_t over = 0;
  double identical = 0;
};

Bf16Agreement bf16_agreement(const torch::Tensor& got, const torch::Tensor& ref, double fp32_rel) {
  const torch::Tensor g = got.to(torch::kFloat64), r = ref.to(torch::kFloat64);
  const double delta = fp32_rel * r.abs().max().item<double>();
  const torch::Tensor bound = std::ldexp(1.0, -7) * r.abs() + 2 * delta;
  return Bf16Agreement{((g - r).abs() > bound).sum().item<int64_t>(),
                       (g == r).to(torch::kFloat64).mean().item<double>()};
}

// (A, B) = (aa, bb)·e^pp of two fp32 states, compared at the larger exponent: max relative error.
double state_error(const Bf16Run& got, const Bf16Run& ref) {
  const torch::Tensor m = torch::maximum(got.pp, ref.pp);
  const torch::Tensor sg = torch::exp(got.pp - m), sr = torch::exp(ref.pp - m);
  const torch::Tensor eb = ((got.bb * sg - ref.bb * sr).abs() / (ref.bb * sr)).max();
  const torch::Tensor ea = ((got.aa * sg - ref.aa * sr).abs() / ((ref.aa * sr).abs() + ref.bb * sr)).max();
  return torch::maximum(eb, ea).item<double>();
}

}  // namespace

TEST_CASE("chunked CUDA forward and backward in bf16 equal the sequential kernels and the CPU op", "[kernels][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  namespace ref = rwkv::test::wkv;
  // Inputs drawn as the fp32 test's above: time_decay over -8..3, |k| up to 30, T = 1000, B·C = 192
  // (not a multiple of the 128-thread block); made on the CPU, so both devices see the same values.
  const int64_t B = 2, T = 1000, C = 96;
  torch::manual_seed(6);
  Bf16Problem p;
  p.td = torch::rand({C}) * 11 - 8;
  p.tf = torch::rand({C}) * 6 - 3;
  p.k = ((torch::rand({B, T, C}) * 2 - 1) * 30).to(torch::kBFloat16);
  p.v = torch::randn({B, T, C}).to(torch::kBFloat16);
  const torch::Tensor pre_k = ((torch::rand({B, 37, C}) * 2 - 1) * 30).to(torch::kBFloat16);
  p.carried = rwkv::wkv(p.td, p.tf, pre_k, torch::randn({B, 37, C}).to(torch::kBFloat16)).state;
  p.r = torch::randn({B, T, C}).to(torch::kBFloat16).to(torch::kFloat32);
  p.g_aa = torch::randn({B, C});
  p.g_bb = torch::randn({B, C});

  // The fp32 error of any path against the exact value is within the bound of wkv_reference.h
  // (the state holds up to n_eff = min(T, 1/(1 - e^w)) = T tokens for time_decay -8):
  // 8·2^-24·1000 ≈ 4.8e-4 of the scale, so two paths (the chunked order, or the device's expf
  // against the host's exp) are within twice that of each other, still 4x below one bf16 step.
  // Measured on these inputs with the host-run kernels and the CPU op: y of chunk 64 against the
  // sequential kernel within 2.3e-5, B within 3.4e-4; the fp32 CPU op against the same op in
  // double within 3.6e-4 (B) and 3.3e-4 (∂L/∂w); 98-99% of the bf16 outputs bit-identical.
  const double fp32_rel = 2 * ref::fp32_tolerance(T, -8);
  const Bf16Run cpu = bf16_run(p, torch::kCPU, "0");
  const Bf16Run seq = bf16_run(p, torch::kCUDA, "0");

  // The sequential kernel against the CPU op: y and the bf16 gradients of k and v by the bf16 rule;
  // the fp32 gradients (time_decay, time_first: sums over B·T; the initial state) and the final
  // state by the fp32 bound, scaled by 1 + max |reference| (wkv_reference.h max_scaled_diff).
  {
    const Bf16Agreement y = bf16_agreement(seq.y, cpu.y, fp32_rel), gk = bf16_agreement(seq.k, cpu.k, fp32_rel),
                        gv = bf16_agreement(seq.v, cpu.v, fp32_rel);
    const double es = state_error(seq, cpu);
    const double eg = std::max({ref::max_scaled_diff(seq.td, cpu.td), ref::max_scaled_diff(seq.tf, cpu.tf),
                                ref::max_scaled_diff(seq.aa0, cpu.aa0), ref::max_scaled_diff(seq.bb0, cpu.bb0),
                                ref::max_scaled_diff(seq.pp0, cpu.pp0)});
    CAPTURE(y.over, y.identical, gk.over, gk.identical, gv.over, gv.identical, es, eg, fp32_rel);
    CHECK(y.over == 0);
    CHECK(gk.over == 0);
    CHECK(gv.over == 0);
    CHECK(y.identical > 0.95);
    CHECK(gk.identical > 0.95);
    CHECK(gv.identical > 0.95);
    CHECK(es < fp32_rel);
    CHECK(eg < fp32_rel);
    fmt::print("wkv bf16 CUDA sequential vs CPU op: y {:.4f} identical, gk {:.4f}, gv {:.4f}; state {:.3g}, fp32 "
               "gradients {:.3g}\n", y.identical, gk.identical, gv.identical, es, eg);
  }

  // Chunk sizes 1, 64, T − 1, T (sequential kernel) and beyond T.
  for (const char* chunk : {"1", "64", "999", "1000", "1333"}) {
    INFO("RWKV_WKV_CHUNK=" << chunk);
    const Bf16Run got = bf16_run(p, torch::kCUDA, chunk);
    for (const Bf16Run* against : {&seq, &cpu}) {
      const Bf16Agreement y = bf16_agreement(got.y, against->y, fp32_rel);
      const double es = state_error(got, *against);
      CAPTURE(against == &seq ? "sequential kernel" : "CPU op", y.over, y.identical, es);
      CHECK(y.over == 0);
      CHECK(y.identical > 0.95);
      CHECK(es < fp32_rel);
    }
    // The backward is chunked too (wkv_math.h "Chunked backward"): the same sums in another
    // order, so the bf16 gradients of k and v by the bf16 rule and the fp32 ones (time_decay,
    // time_first: sums over B·T; the initial state) by the fp32 bound, against both references.
    // Measured with the host-run kernels against the CPU op on inputs drawn alike (B=2, T=1000,
    // C=96, |k| ≤ 20, chunk 64): ∂L/∂w within 4.0e-4 (scaled), the initial state 7.4e-5, fp32 ∂L/∂k
    // 1.4e-4 — under fp32_rel ≈ 9.5e-4; chunks 1 and 999 are 10× closer.
    for (const Bf16Run* against : {&seq, &cpu}) {
      const Bf16Agreement gk = bf16_agreement(got.k, against->k, fp32_rel),
                          gv = bf16_agreement(got.v, against->v, fp32_rel);
      const double eg = std::max({ref::max_scaled_diff(got.td, against->td), ref::max_scaled_diff(got.tf, against->tf),
                                  ref::max_scaled_diff(got.aa0, against->aa0), ref::max_scaled_diff(got.bb0, against->bb0),
                                  ref::max_scaled_diff(got.pp0, against->pp0)});
      CAPTURE(against == &seq ? "sequential kernel" : "CPU op", gk.over, gk.identical, gv.over, gv.identical, eg);
      CHECK(gk.over == 0);
      CHECK(gv.over == 0);
      CHECK(gk.identical > 0.95);
      CHECK(gv.identical > 0.95);
      CHECK(eg < fp32_rel);
    }
    fmt::print("wkv bf16 CUDA chunk {} vs sequential: y {:.4f} identical, state {:.3g}\n", chunk,
               bf16_agreement(got.y, seq.y, fp32_rel).identical, state_error(got, seq));
  }
}
