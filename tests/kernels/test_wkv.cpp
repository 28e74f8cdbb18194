// The WKV op (rwkv/wkv.h) against independent references: the kernels/README.md "WKV" formula evaluated
// naively in double (tests/kernels/wkv_reference.h), central finite differences in double, and
// itself (bf16 vs fp32, chunked vs one pass, CUDA vs CPU).
#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "rwkv/wkv.h"
#include "tests/kernels/wkv_reference.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;

using namespace rwkv::test::wkv;

// Naive y for all (b, t, c); time_decay → w = -exp(time_decay) in double.
Tensor naive_forward(const Inputs& in) {
  const Tensor k = in.k.contiguous(), v = in.v.contiguous();
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  Tensor y = torch::empty_like(k);
  auto ya = y.accessor<double, 3>();
  const auto td = in.time_decay.accessor<double, 1>();
  const auto tf = in.time_first.accessor<double, 1>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const double* kp = k.data_ptr<double>() + b * T * C + c;
      const double* vp = v.data_ptr<double>() + b * T * C + c;
      for (int64_t t = 0; t < T; ++t) ya[b][t][c] = naive_y(kp, vp, C, t, -std::exp(td[c]), tf[c]);
    }
  return y;
}

rwkv::WkvOutput run(const Inputs& in, torch::ScalarType io, const std::optional<rwkv::WkvState>& s = std::nullopt) {
  const auto acc = io == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  return rwkv::wkv(in.time_decay.to(acc), in.time_first.to(acc), in.k.to(io), in.v.to(io), s);
}

}  // namespace

TEST_CASE("wkv forward equals the naive WKV formula in double", "[kernels]") {
  struct Case {
    int64_t B, T, C;
    double k_max, d_lo, d_hi;
  };
  // T = 1, C not a multiple of 32 (and of the CPU block of 64), |k| up to 60, strong decay
  // (time_decay 8: w ≈ -2981) and weak decay (time_decay -8: w ≈ -3.4e-4).
  const std::vector<Case> cases = {{1, 1, 1, 5, -1, 1},   {3, 1, 33, 60, -8, 8}, {2, 17, 5, 5, -8, 8},
                                   {2, 64, 70, 60, -8, 8}, {1, 96, 45, 60, 6, 8}, {1, 200, 31, 60, -8, -6},
                                   {4, 33, 129, 20, -3, 2}};
  double worst32 = 0, worst64 = 0;
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const Inputs in = random_inputs(c.B, c.T, c.C, c.k_max, c.d_lo, c.d_hi, seed++);
    const Tensor ref = naive_forward(in);
    const Tensor y32 = run(in, torch::kFloat32).y;
    const Tensor y64 = run(in, torch::kFloat64).y;
    REQUIRE(torch::isfinite(y32).all().item<bool>());
    const double e32 = max_scaled_diff(y32, ref), e64 = max_scaled_diff(y64, ref);
    const double tol32 = fp32_tolerance(c.T, c.d_lo);
    CAPTURE(c.B, c.T, c.C, c.k_max, c.d_lo, c.d_hi, e32, tol32, e64);
    CHECK(e32 < tol32);
    CHECK(e64 < 1e-12);
    worst32 = std::max(worst32, e32);
    worst64 = std::max(worst64, e64);
  }
  fmt::print("wkv forward vs naive double: max scaled error fp32 {:.3g}, fp64 {:.3g}\n", worst32, worst64);
}

namespace {

// A valid state to start from: the state after a random prefix of `prefix_len` tokens, as the op
// itself would carry it (bb ≥ 1, pp a real exponent).
rwkv::WkvState prefix_state(const Inputs& like, int64_t prefix_len, torch::ScalarType io, uint64_t seed) {
  const Inputs pre = random_inputs(like.k.size(0), prefix_len, like.k.size(2), 3, -1, 1, seed);
  return run(Inputs{like.time_decay, like.time_first, pre.k, pre.v}, io).state;
}

}  // namespace

TEST_CASE("wkv forward from a carried state equals the naive formula with the initial state", "[kernels]") {
  const Inputs in = random_inputs(2, 40, 37, 30, -8, 8, 11);
  const rwkv::WkvState s0 = prefix_state(in, 9, torch::kFloat64, 12);
  const Tensor y = run(in, torch::kFloat64, s0).y;
  const auto aa = s0.aa.accessor<double, 2>(), bb = s0.bb.accessor<double, 2>(), pp = s0.pp.accessor<double, 2>();
  double worst = 0;
  const int64_t T = in.k.size(1), C = in.k.size(2);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t o = (b * T + t) * C + c;
        const double ref = naive_y(in.k.data_ptr<double>() + b * T * C + c, in.v.data_ptr<double>() + b * T * C + c,
                                   C, t, -std::exp(in.time_decay[c].item<double>()),
                                   in.time_first[c].item<double>(), aa[b][c], bb[b][c], pp[b][c]);
        worst = std::max(worst, std::abs(y.data_ptr<double>()[o] - ref));
      }
  CHECK(worst < 1e-12);
  fmt::print("wkv forward with initial state vs naive double: max error {:.3g}\n", worst);
}

namespace {

// L = Σ R1·y + Σ (R2·aa_T + R3·bb_T)·e^{pp_T}: the final state enters through A_T and B_T, the
// way a following chunk or RNN step consumes it.
struct FdProblem {
  Inputs in;
  Tensor aa0, bb0, pp0, r1, r2, r3;

  Tensor loss(const Tensor& td, const Tensor& tf, const Tensor& k, const Tensor& v, const Tensor& aa0_,
              const Tensor& bb0_, const Tensor& pp0_) const {
    const auto out = rwkv::wkv(td, tf, k, v, rwkv::WkvState{aa0_, bb0_, pp0_});
    const Tensor scale = torch::exp(out.state.pp);
    return (r1 * out.y).sum() + (r2 * out.state.aa * scale).sum() + (r3 * out.state.bb * scale).sum();
  }
};

// Central differences of every element of every input against autograd, in double.
// Returns the worst error relative to (1 + max |gradient|) over the inputs.
double finite_difference_check(const FdProblem& p, double h, double tol) {
  std::vector<Tensor> xs = {p.in.time_decay, p.in.time_first, p.in.k, p.in.v, p.aa0, p.bb0, p.pp0};
  const std::vector<std::string> names = {"time_decay", "time_first", "k", "v", "aa0", "bb0", "pp0"};
  std::vector<Tensor> leaves;
  for (const Tensor& x : xs) leaves.push_back(x.clone().requires_grad_(true));
  p.loss(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], leaves[5], leaves[6]).backward();
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor grad = leaves[i].grad();
    REQUIRE(grad.defined());
    Tensor fd = torch::empty_like(xs[i]);
    Tensor x = xs[i].clone();
    auto flat = x.view({-1});
    for (int64_t j = 0; j < flat.numel(); ++j) {
      const double x0 = flat[j].item<double>();
      std::vector<Tensor> args = xs;
      flat[j] = x0 + h;
      args[i] = x;
      const double lp = p.loss(args[0], args[1], args[2], args[3], args[4], args[5], args[6]).item<double>();
      flat[j] = x0 - h;
      const double lm = p.loss(args[0], args[1], args[2], args[3], args[4], args[5], args[6]).item<double>();
      flat[j] = x0;
      fd.view({-1})[j] = (lp - lm) / (2 * h);
    }
    const double err = max_abs_diff(grad, fd) / (1.0 + fd.abs().max().item<double>());
    CAPTURE(names[i], err);
    CHECK(err < tol);
    worst = std::max(worst, err);
  }
  return worst;
}

}  // namespace

TEST_CASE("wkv gradients match central finite differences in double", "[kernels]") {
  struct Case {
    int64_t B, T, C;
    double k_max, d_lo, d_hi;
    const char* what;
  };
  const std::vector<Case> cases = {{2, 7, 3, 3, -2, 1, "moderate"},
                                   {1, 9, 4, 60, -8, 8, "|k| up to 60, time_decay -8..8"},
                                   {2, 1, 3, 3, -1, 1, "T = 1"}};
  uint64_t seed = 21;
  for (const Case& c : cases) {
    FdProblem p;
    p.in = random_inputs(c.B, c.T, c.C, c.k_max, c.d_lo, c.d_hi, seed++);
    const rwkv::WkvState s0 = prefix_state(p.in, 5, torch::kFloat64, seed++);
    p.aa0 = s0.aa;
    p.bb0 = s0.bb;
    p.pp0 = s0.pp;
    p.r1 = torch::randn_like(p.in.k);
    p.r2 = torch::randn_like(p.aa0);
    p.r3 = torch::randn_like(p.aa0);
    if (c.k_max > 10) {  // keep e^{pp_T} of the loss's state term finite
      p.r2.zero_();
      p.r3.zero_();
    }
    const double err = finite_difference_check(p, 1e-6, 1e-6);
    fmt::print("wkv gradient vs finite differences ({}): max scaled error {:.3g}\n", c.what, err);
  }
}

namespace {

struct Grads {
  Tensor y, td, tf, k, v;
};

// A fresh leaf (always a copy, so inputs never share autograd state between runs).
Tensor leaf(const Tensor& t, torch::ScalarType dtype, const torch::Device& dev = torch::kCPU) {
  return t.to(dev, dtype, /*non_blocking=*/false, /*copy=*/true).requires_grad_(true);
}

// y and the gradients of Σ r·y, running the sequence in one pass or split at `split`
// (the second chunk starts from the state the first returned).
Grads chunked_grads(const Inputs& in, const Tensor& r, torch::ScalarType io, int64_t split) {
  const auto acc = io == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  Tensor td = leaf(in.time_decay, acc), tf = leaf(in.time_first, acc);
  Tensor k = leaf(in.k, io), v = leaf(in.v, io);
  Tensor y;
  if (split <= 0) {
    y = rwkv::wkv(td, tf, k, v).y;
  } else {
    const int64_t T = in.k.size(1);
    const auto first = rwkv::wkv(td, tf, k.narrow(1, 0, split), v.narrow(1, 0, split));
    const auto second = rwkv::wkv(td, tf, k.narrow(1, split, T - split), v.narrow(1, split, T - split), first.state);
    y = torch::cat({first.y, second.y}, 1);
  }
  (y.to(torch::kFloat64) * r).sum().backward();
  return Grads{y.detach(), td.grad(), tf.grad(), k.grad(), v.grad()};
}

double max_grads_diff(const Grads& a, const Grads& b) {
  return std::max({max_scaled_diff(a.td, b.td), max_scaled_diff(a.tf, b.tf), max_scaled_diff(a.k, b.k),
                   max_scaled_diff(a.v, b.v)});
}

}  // namespace

TEST_CASE("wkv state carried across two chunks equals one pass", "[kernels]") {
  const Inputs in = random_inputs(2, 50, 37, 20, -8, 8, 31);
  const Tensor r = torch::randn_like(in.k);
  for (const auto io : {torch::kFloat64, torch::kFloat32}) {
    const Grads whole = chunked_grads(in, r, io, 0);
    const Grads split = chunked_grads(in, r, io, 20);
    const double ey = max_scaled_diff(split.y, whole.y), eg = max_grads_diff(split, whole);
    const double tol = io == torch::kFloat64 ? 1e-12 : 1e-5;
    CAPTURE(io, ey, eg);
    CHECK(ey <= tol);
    CHECK(eg <= tol);
    fmt::print("wkv two chunks vs one pass ({}): y {:.3g}, gradients {:.3g}\n", c10::toString(io), ey, eg);
  }
}

TEST_CASE("wkv bf16 inputs agree with fp32 within bf16 rounding", "[kernels]") {
  // The same bf16-representable inputs through both paths: the bf16 path differs only by rounding
  // y, ∂L/∂y and the gradients to bf16 (8 significant bits, relative step 2^-8 ≈ 3.9e-3).
  Inputs in = random_inputs(3, 80, 70, 20, -8, 8, 41);
  in.k = in.k.to(torch::kBFloat16).to(torch::kFloat64);
  in.v = in.v.to(torch::kBFloat16).to(torch::kFloat64);
  const Tensor r = torch::randn_like(in.k).to(torch::kBFloat16).to(torch::kFloat64);
  const Grads g32 = chunked_grads(in, r, torch::kFloat32, 0);
  const Grads g16 = chunked_grads(in, r, torch::kBFloat16, 0);
  REQUIRE(g16.y.scalar_type() == torch::kBFloat16);
  const double ey = max_scaled_diff(g16.y, g32.y), eg = max_grads_diff(g16, g32);
  CHECK(ey < 4e-3);
  CHECK(eg < 8e-3);
  fmt::print("wkv bf16 vs fp32: y {:.3g}, gradients {:.3g} (scaled by 1 + max |reference|)\n", ey, eg);
}

TEST_CASE("wkv with bf16 parameters computes what fp32 parameters of the same values do", "[kernels]") {
  // The op reads time_decay and time_first as stored and computes in fp32 either way, so parameters
  // that bf16 represents give the same bits, with a carried state or without, and their gradients
  // are the fp32 ones rounded once to bf16 (summed in fp32 first, not in bf16).
  Inputs in = random_inputs(2, 40, 37, 20, -8, 8, 43);
  in.time_decay = in.time_decay.to(torch::kBFloat16).to(torch::kFloat64);
  in.time_first = in.time_first.to(torch::kBFloat16).to(torch::kFloat64);
  const Tensor r = torch::randn_like(in.k);
  // A carried state (from a 9-token prefix) and none, one call each: the parameters' gradient is
  // one op's, not a sum of several calls' (which bf16 would round per call).
  const rwkv::WkvState prefix = prefix_state(in, 9, torch::kFloat32, 44);
  for (const auto io : {torch::kFloat32, torch::kBFloat16})
    for (const bool carried : {false, true}) {
      const auto run_with = [&](torch::ScalarType param) {
        Tensor td = leaf(in.time_decay, param), tf = leaf(in.time_first, param);
        Tensor k = leaf(in.k, io), v = leaf(in.v, io);
        const Tensor y = carried ? rwkv::wkv(td, tf, k, v, prefix).y : rwkv::wkv(td, tf, k, v).y;
        (y.to(torch::kFloat64) * r).sum().backward();
        return Grads{y.detach(), td.grad(), tf.grad(), k.grad(), v.grad()};
      };
      const Grads g32 = run_with(torch::kFloat32), g16 = run_with(torch::kBFloat16);
      CAPTURE(io, carried);
      REQUIRE(g16.td.scalar_type() == torch::kBFloat16);
      REQUIRE(g16.tf.scalar_type() == torch::kBFloat16);
      CHECK(torch::equal(g16.y, g32.y));
      CHECK(torch::equal(g16.k, g32.k));
      CHECK(torch::equal(g16.v, g32.v));
      CHECK(torch::equal(g16.td, g32.td.to(torch::kBFloat16)));
      CHECK(torch::equal(g16.tf, g32.tf.to(torch::kBFloat16)));
    }
}

TEST_CASE("wkv stays finite and exact over T = 100k", "[kernels]") {
  // Small B·C, T = 100000, |k| up to 60 and time_decay over -8..8 (w from -3.4e-4 to -2981).
  // The naive formula costs O(t) per position: it is evaluated at sampled positions.
  const int64_t T = 100000, C = 40;
  Inputs in = random_inputs(1, T, C, 60, -8, 8, 51);
  in.time_decay = torch::linspace(-8, 8, C, torch::kFloat64);
  Tensor td = leaf(in.time_decay, torch::kFloat32), tf = leaf(in.time_first, torch::kFloat32);
  Tensor k = leaf(in.k, torch::kFloat32), v = leaf(in.v, torch::kFloat32);
  const auto out = rwkv::wkv(td, tf, k, v);
  REQUIRE(torch::isfinite(out.y).all().item<bool>());
  double worst = 0;
  for (const int64_t t : {int64_t{0}, int64_t{1}, int64_t{999}, int64_t{31337}, int64_t{77777}, T - 1}) {
    for (int64_t c = 0; c < C; ++c) {
      const double ref = naive_y(in.k.data_ptr<double>() + c, in.v.data_ptr<double>() + c, C, t,
                                 -std::exp(in.time_decay[c].item<double>()), in.time_first[c].item<double>());
      worst = std::max(worst, std::abs(out.y[0][t][c].item<double>() - ref));
    }
  }
  const double tol = fp32_tolerance(T, -8);
  CAPTURE(worst, tol);
  CHECK(worst < tol);
  (out.y * torch::randn_like(out.y)).sum().backward();
  for (const Tensor& g : {td.grad(), tf.grad(), k.grad(), v.grad()}) CHECK(torch::isfinite(g).all().item<bool>());
  fmt::print("wkv T = 100000 fp32 vs naive double at sampled t: max error {:.3g} (tolerance {:.3g}); gradients finite\n",
             worst, tol);
}

TEST_CASE("wkv rejects mismatched inputs with a clear message", "[kernels]") {
  const Inputs in = random_inputs(2, 5, 3, 3, -1, 1, 61);
  const Tensor td = in.time_decay.to(torch::kFloat32), tf = in.time_first.to(torch::kFloat32);
  const Tensor k = in.k.to(torch::kFloat32), v = in.v.to(torch::kFloat32);
  CHECK_THROWS_WITH(rwkv::wkv(td, tf, k, v.to(torch::kBFloat16)), Catch::Contains("v has dtype"));
  CHECK_THROWS_WITH(rwkv::wkv(td.narrow(0, 0, 2), tf, k, v), Catch::Contains("time_decay has shape"));
  CHECK_THROWS_WITH(rwkv::wkv(td, tf, k, v.narrow(1, 0, 4)), Catch::Contains("v has shape"));
}

// ---- CUDA twins: the kernels against the CPU op on the same inputs -------------------------

TEST_CASE("wkv CUDA forward and backward equal the CPU op", "[kernels][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  const Inputs in = random_inputs(3, 300, 100, 60, -8, 8, 71);
  const Tensor r = torch::randn_like(in.k);
  for (const auto io : {torch::kFloat32, torch::kBFloat16}) {
    const auto grads_on = [&](const torch::Device& dev) {
      Tensor td = leaf(in.time_decay, torch::kFloat32, dev), tf = leaf(in.time_first, torch::kFloat32, dev);
      Tensor k = leaf(in.k, io, dev), v = leaf(in.v, io, dev);
      const auto first = rwkv::wkv(td, tf, k.narrow(1, 0, 120), v.narrow(1, 0, 120));
      const auto second = rwkv::wkv(td, tf, k.narrow(1, 120, 180), v.narrow(1, 120, 180), first.state);
      const Tensor y = torch::cat({first.y, second.y}, 1);
      (y.to(torch::kFloat64) * r.to(dev)).sum().backward();
      return Grads{y.detach().cpu(), td.grad().cpu(), tf.grad().cpu(), k.grad().cpu(), v.grad().cpu()};
    };
    const Grads cpu = grads_on(torch::kCPU), gpu = grads_on(torch::kCUDA);
    const double ey = max_scaled_diff(gpu.y, cpu.y), eg = max_grads_diff(gpu, cpu);
    // Same arithmetic; fp32 differs by expf vs the host exp (ulps), bf16 by rounding flips.
    const double tol = io == torch::kFloat32 ? 1e-5 : 8e-3;
    CAPTURE(io, ey, eg);
    CHECK(ey < tol);
    CHECK(eg < tol);
    fmt::print("wkv CUDA vs CPU ({}): y {:.3g}, gradients {:.3g}\n", c10::toString(io), ey, eg);
  }
}

TEST_CASE("wkv CUDA handles T = 100k and large |k| without inf/NaN", "[kernels][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  const Inputs in = random_inputs(2, 100000, 40, 60, -8, 8, 81);
  for (const auto io : {torch::kFloat32, torch::kBFloat16}) {
    Tensor k = leaf(in.k, io, torch::kCUDA), v = leaf(in.v, io, torch::kCUDA);
    Tensor td = leaf(in.time_decay, torch::kFloat32, torch::kCUDA);
    const auto out = rwkv::wkv(td, in.time_first.to(torch::kCUDA, torch::kFloat32), k, v);
    REQUIRE(torch::isfinite(out.y).all().item<bool>());
    const Tensor y_cpu = rwkv::wkv(in.time_decay.to(torch::kFloat32), in.time_first.to(torch::kFloat32), in.k.to(io),
                                   in.v.to(io)).y;
    CHECK(max_scaled_diff(out.y.cpu(), y_cpu) < (io == torch::kFloat32 ? 1e-4 : 8e-3));
    out.y.to(torch::kFloat32).sum().backward();
    CHECK(torch::isfinite(k.grad()).all().item<bool>());
    CHECK(torch::isfinite(td.grad()).all().item<bool>());
  }
}
