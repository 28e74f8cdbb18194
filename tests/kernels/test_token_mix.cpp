// The fused token shift + μ-mixes (rwkv/token_shift.h, kernels/token_mix_op.h) against the
// formulation it replaced, written out here: xx = cat(prev or zeros, x[:, :−1]) and
// x·μ + xx·(1 − μ) per mix, in double and in fp32; gradients against central finite differences
// in double and against autograd through that formulation; a carried row against one pass;
// bf16 and bf16 autocast within bf16 rounding; the same bits whatever the thread count.
// T crosses the CPU op's 16-token tasks (1, 16, 17, 37).
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include "kernels/token_mix_op.h"
#include "rwkv/token_shift.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;

// The replaced formulation: zero pad (or the carried row) + shift, then x·μ + xx·(1 − μ).
std::vector<Tensor> naive_mixes(const Tensor& x, const Tensor& prev, const std::vector<Tensor>& mu) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  const Tensor first = prev.defined() ? prev.reshape({B, 1, D}) : torch::zeros({B, 1, D}, x.options());
  const Tensor xx = torch::cat({first, x.narrow(1, 0, T - 1)}, 1);
  std::vector<Tensor> out;
  for (const Tensor& m : mu) out.push_back(x * m + xx * (1 - m));
  return out;
}

struct Problem {
  Tensor x, prev;
  std::vector<Tensor> mu, w;  // w: the weights of the scalar loss Σ_j <out_j, w_j>
};

Problem make_problem(int64_t B, int64_t T, int64_t D, int mixes, bool with_prev, uint64_t seed) {
  torch::manual_seed(seed);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  Problem p{torch::randn({B, T, D}, f64), with_prev ? torch::randn({B, D}, f64) : Tensor(), {}, {}};
  for (int m = 0; m < mixes; ++m) {
    p.mu.push_back(torch::rand({1, 1, D}, f64));
    p.w.push_back(torch::randn({B, T, D}, f64));
  }
  return p;
}

Tensor loss_of(const std::vector<Tensor>& outs, const std::vector<Tensor>& w) {
  Tensor l = torch::zeros({}, torch::kFloat64);
  for (size_t j = 0; j < outs.size(); ++j) l = l + (outs[j].to(torch::kFloat64) * w[j]).sum();
  return l;
}

struct Grads {
  Tensor x, prev;
  std::vector<Tensor> mu;
};

// Gradients of loss_of through `mixes` (the fused op or the naive formulation) at dtype `dt`.
template <class Mixes>
Grads grads_of(const Problem& p, torch::ScalarType dt, const Mixes& mixes) {
  // Fresh leaves (a .to() of the same dtype would return p's own tensor and accumulate into it).
  const auto leaf = [](const Tensor& t, torch::ScalarType d) { return t.to(d).detach().clone().requires_grad_(true); };
  const Tensor x = leaf(p.x, dt);
  const Tensor prev = p.prev.defined() ? leaf(p.prev, dt) : Tensor();
  std::vector<Tensor> mu;
  for (const Tensor& m : p.mu) mu.push_back(leaf(m, dt == torch::kFloat64 ? dt : torch::kFloat32));
  loss_of(mixes(x, prev, mu), p.w).backward();
  Grads g{x.grad(), prev.defined() ? prev.grad() : Tensor(), {}};
  for (const Tensor& m : mu) g.mu.push_back(m.grad());
  return g;
}

const auto fused = [](const Tensor& x, const Tensor& prev, const std::vector<Tensor>& mu) {
  return rwkv::token_shift_mix(x, prev, mu);
};
const auto naive = [](const Tensor& x, const Tensor& prev, const std::vector<Tensor>& mu) {
  return naive_mixes(x, prev, mu);
};

double max_diff(const Tensor& a, const Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

struct Case {
  int64_t B, T, D;
  int mixes;
  bool with_prev;
};
const Case kCases[] = {{2, 1, 5, 3, true}, {1, 16, 8, 2, false}, {3, 17, 6, 3, false}, {2, 37, 33, 2, true},
                       {1, 5, 4, 1, true}};

}  // namespace

TEST_CASE("token_shift_mix equals zeros+cat and x*m + xx*(1-m), double and fp32", "[kernels]") {
  uint64_t seed = 1;
  for (const Case& c : kCases) {
    const Problem p = make_problem(c.B, c.T, c.D, c.mixes, c.with_prev, seed++);
    CAPTURE(c.B, c.T, c.D, c.mixes, c.with_prev);
    for (const auto dt : {torch::kFloat64, torch::kFloat32}) {
      std::vector<Tensor> mu;
      for (const Tensor& m : p.mu) mu.push_back(m.to(dt));
      const Tensor prev = p.prev.defined() ? p.prev.to(dt) : Tensor();
      const auto got = rwkv::token_shift_mix(p.x.to(dt), prev, mu);
      const auto want = naive_mixes(p.x.to(dt), prev, mu);
      REQUIRE(got.size() == want.size());
      for (size_t j = 0; j < got.size(); ++j) {
        CHECK(got[j].scalar_type() == dt);
        // The same expression, element by element, in the same type.
        CHECK(max_diff(got[j], want[j]) <= (dt == torch::kFloat64 ? 1e-15 : 1e-6));
      }
    }
  }
}

TEST_CASE("token_shift_mix gradients match central finite differences in double", "[kernels]") {
  const Problem p = make_problem(2, 18, 3, 3, true, 11);
  const Grads g = grads_of(p, torch::kFloat64, fused);
  const double h = 1e-6;
  // The loss is bilinear in (x, prev) and μ, so central differences are exact up to rounding.
  // `which` picks the perturbed tensor of a copy: -2 x, -1 prev, j ≥ 0 μ_j.
  const auto fd = [&](int which, int64_t i) {
    const auto at = [&](double delta) {
      Problem q{p.x.clone(), p.prev.clone(), {}, p.w};
      for (const Tensor& m : p.mu) q.mu.push_back(m.clone());
      Tensor& t = which == -2 ? q.x : which == -1 ? q.prev : q.mu[static_cast<size_t>(which)];
      t.view({-1})[i] += delta;
      return loss_of(rwkv::token_shift_mix(q.x, q.prev, q.mu), q.w).item<double>();
    };
    return (at(h) - at(-h)) / (2 * h);
  };
  double worst = 0;
  for (int64_t i = 0; i < p.x.numel(); ++i)
    worst = std::max(worst, std::abs(fd(-2, i) - g.x.view({-1})[i].item<double>()));
  for (int64_t i = 0; i < p.prev.numel(); ++i)
    worst = std::max(worst, std::abs(fd(-1, i) - g.prev.view({-1})[i].item<double>()));
  for (size_t j = 0; j < p.mu.size(); ++j) {
    REQUIRE(g.mu[j].sizes() == p.mu[j].sizes());
    for (int64_t i = 0; i < p.mu[j].numel(); ++i)
      worst = std::max(worst, std::abs(fd(static_cast<int>(j), i) - g.mu[j].view({-1})[i].item<double>()));
  }
  CAPTURE(worst);
  CHECK(worst < 1e-7);
}

TEST_CASE("token_shift_mix gradients equal autograd through the replaced formulation", "[kernels]") {
  uint64_t seed = 21;
  for (const Case& c : kCases) {
    const Problem p = make_problem(c.B, c.T, c.D, c.mixes, c.with_prev, seed++);
    CAPTURE(c.B, c.T, c.D, c.mixes, c.with_prev);
    for (const auto dt : {torch::kFloat64, torch::kFloat32}) {
      const Grads got = grads_of(p, dt, fused), want = grads_of(p, dt, naive);
      const double tol = dt == torch::kFloat64 ? 1e-12 : 2e-4;  // fp32: sums of up to B·T terms of O(1)
      CHECK(got.x.scalar_type() == dt);
      CHECK(max_diff(got.x, want.x) < tol);
      if (c.with_prev) CHECK(max_diff(got.prev, want.prev) < tol);
      for (size_t j = 0; j < got.mu.size(); ++j) CHECK(max_diff(got.mu[j], want.mu[j]) < tol);
    }
  }
}

TEST_CASE("token_shift_mix with a carried row continues one pass exactly", "[kernels]") {
  const Problem p = make_problem(2, 30, 7, 3, false, 31);
  const Tensor x = p.x.detach().clone().requires_grad_(true);
  const auto whole = rwkv::token_shift_mix(x, Tensor(), p.mu);
  const Tensor a = x.narrow(1, 0, 13), b = x.narrow(1, 13, 17);
  const auto first = rwkv::token_shift_mix(a, Tensor(), p.mu);
  // The carried row is the last token of the first part, with its gradient flowing back to x.
  const auto second = rwkv::token_shift_mix(b, a.select(1, 12), p.mu);
  std::vector<Tensor> joined;
  for (size_t j = 0; j < whole.size(); ++j) {
    joined.push_back(torch::cat({first[j], second[j]}, 1));
    CHECK(torch::equal(joined[j], whole[j]));
  }
  const Tensor g_whole = torch::autograd::grad({loss_of(whole, p.w)}, {x})[0];
  const Tensor g_split = torch::autograd::grad({loss_of(joined, p.w)}, {x})[0];
  CHECK(max_diff(g_whole, g_split) < 1e-13);
}

TEST_CASE("token_shift_mix in bf16 and under bf16 autocast stays within bf16 rounding", "[kernels]") {
  const Problem p = make_problem(2, 37, 33, 3, true, 41);
  const auto ref = naive_mixes(p.x, p.prev, p.mu);
  std::vector<Tensor> mu32;
  for (const Tensor& m : p.mu) mu32.push_back(m.to(torch::kFloat32));
  // bf16 x: the inputs are rounded once, the mixes once more: |error| ≤ 2·2^-8 of the terms' size.
  const Tensor scale = p.x.abs() + torch::cat({p.prev.unsqueeze(1), p.x.narrow(1, 0, 36)}, 1).abs();
  {
    const auto got = rwkv::token_shift_mix(p.x.to(torch::kBFloat16), p.prev.to(torch::kBFloat16), mu32);
    for (size_t j = 0; j < got.size(); ++j) {
      CHECK(got[j].scalar_type() == torch::kBFloat16);
      CHECK(((got[j].to(torch::kFloat64) - ref[j]).abs() - scale * (2.0 / 256)).max().item<double>() <= 0);
    }
  }
  // Autocast: fp32 x gives bf16 mixes, the fp32 result rounded once.
  const Tensor x32 = p.x.to(torch::kFloat32).requires_grad_(true);
  const auto plain = rwkv::token_shift_mix(x32, p.prev.to(torch::kFloat32), mu32);
  std::vector<Tensor> cast;
  {
    const bool was = at::autocast::is_autocast_enabled(at::kCPU);
    const auto was_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    cast = rwkv::token_shift_mix(x32, p.prev.to(torch::kFloat32), mu32);
    at::autocast::set_autocast_enabled(at::kCPU, was);
    at::autocast::set_autocast_dtype(at::kCPU, was_dtype);
  }
  for (size_t j = 0; j < cast.size(); ++j) {
    CHECK(cast[j].scalar_type() == torch::kBFloat16);
    CHECK(torch::equal(cast[j], plain[j].to(torch::kBFloat16)));
  }
  // Its backward takes bf16 gradients and returns fp32 ones for x (relative to the fp64 reference).
  const Tensor gx = torch::autograd::grad({loss_of(cast, p.w)}, {x32})[0];
  const Grads want = grads_of(p, torch::kFloat64, naive);
  CHECK(gx.scalar_type() == torch::kFloat32);
  CHECK(max_diff(gx, want.x) / want.x.abs().max().item<double>() < 1e-2);
}

TEST_CASE("token_shift_mix with bf16 μ computes what fp32 μ of the same values does", "[kernels]") {
  // The op reads μ as stored and computes in fp32 either way (bf16 parameters: no cast launched
  // before it), so μ values that bf16 represents give the same mixes and ∂L/∂x bit for bit, and
  // ∂L/∂μ is the fp32 one rounded once to bf16 (summed in fp32, not in bf16). x in fp32 (the
  // LayerNorm output under autocast) and in bf16 (bf16 parameters), with and without a carried row.
  for (const bool with_prev : {false, true})
    for (const auto xt : {torch::kFloat32, torch::kBFloat16}) {
      Problem p = make_problem(2, 37, 33, 3, with_prev, 61);
      p.x = p.x.to(xt);
      if (with_prev) p.prev = p.prev.to(xt);
      const auto run_with = [&](torch::ScalarType mt) {
        const Tensor x = p.x.detach().clone().requires_grad_(true);
        std::vector<Tensor> mu;
        for (const Tensor& m : p.mu) mu.push_back(m.to(torch::kBFloat16).to(mt).requires_grad_(true));
        const auto outs = rwkv::token_shift_mix(x, p.prev, mu);
        loss_of(outs, p.w).backward();
        Grads g{x.grad(), Tensor(), {}};
        for (const Tensor& m : mu) g.mu.push_back(m.grad());
        return std::pair{outs, g};
      };
      const auto [out32, g32] = run_with(torch::kFloat32);
      const auto [out16, g16] = run_with(torch::kBFloat16);
      CAPTURE(with_prev, xt);
      for (size_t j = 0; j < out32.size(); ++j) CHECK(torch::equal(out16[j], out32[j]));
      CHECK(torch::equal(g16.x, g32.x));
      for (size_t j = 0; j < g32.mu.size(); ++j) {
        CHECK(g16.mu[j].scalar_type() == torch::kBFloat16);
        CHECK(g16.mu[j].sizes() == g32.mu[j].sizes());
        CHECK(torch::equal(g16.mu[j], g32.mu[j].to(torch::kBFloat16)));
      }
    }
}

TEST_CASE("token_shift_mix gives the same bits whatever the thread count", "[kernels]") {
  const Problem p = make_problem(3, 70, 40, 3, true, 51);
  std::vector<Tensor> mu32;
  for (const Tensor& m : p.mu) mu32.push_back(m.to(torch::kFloat32));
  const auto run = [&] {
    Problem q = p;
    q.x = p.x.to(torch::kFloat32);
    q.prev = p.prev.to(torch::kFloat32);
    q.mu = mu32;
    return grads_of(q, torch::kFloat32, fused);
  };
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const Grads one = run();
  at::set_num_threads(std::max(2, threads));
  const Grads many = run();
  at::set_num_threads(threads);
  CHECK(torch::equal(one.x, many.x));
  CHECK(torch::equal(one.prev, many.prev));
  for (size_t j = 0; j < one.mu.size(); ++j) CHECK(torch::equal(one.mu[j], many.mu[j]));
}

TEST_CASE("token_shift_mix rejects bad arguments with a clear message", "[kernels]") {
  const Tensor x = torch::randn({2, 4, 6});
  const Tensor mu = torch::rand({1, 1, 6});
  CHECK_THROWS_WITH(rwkv::token_shift_mix(x, Tensor(), {mu, mu, mu, mu}), Catch::Contains("1 to 3 mixes"));
  CHECK_THROWS_WITH(rwkv::token_shift_mix(x, Tensor(), {torch::rand({5})}), Catch::Contains("for D = 6"));
  CHECK_THROWS_WITH(rwkv::token_shift_mix(x, torch::randn({3, 6}), {mu}), Catch::Contains("prev of shape"));
  CHECK_THROWS_WITH(rwkv::token_shift_mix(x.to(torch::kInt32), Tensor(), {mu}), Catch::Contains("x dtype"));
  rwkv::kernels::TokenMixForwardArgs a{x, Tensor(), {mu.view({6})}, {torch::empty({2, 4, 5})}};
  CHECK_THROWS_WITH(rwkv::kernels::token_mix_forward(a), Catch::Contains("out[0] has shape"));
}

TEST_CASE("token_shift_mix CUDA forward and backward equal the CPU op", "[kernels][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  const Problem p = make_problem(3, 300, 100, 3, true, 61);
  for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
    const auto on = [&](const torch::Device& dev) {
      Problem q = p;
      q.x = p.x.to(dev);
      q.prev = p.prev.to(dev);
      for (size_t j = 0; j < q.mu.size(); ++j) {
        q.mu[j] = p.mu[j].to(dev);
        q.w[j] = p.w[j].to(dev);
      }
      const Grads g = grads_of(q, dt, fused);
      std::vector<Tensor> mu32;
      for (const Tensor& m : q.mu) mu32.push_back(m.to(torch::kFloat32));
      const auto out = rwkv::token_shift_mix(q.x.to(dt), q.prev.to(dt), mu32);
      return std::make_pair(g, out);
    };
    const auto cpu = on(torch::kCPU), gpu = on(torch::kCUDA);
    CAPTURE(dt);
    // nvcc may fuse x·μ + xx·(1 − μ) into one FMA: an ulp of fp32, a rounding flip of bf16.
    for (size_t j = 0; j < cpu.second.size(); ++j)
      CHECK(max_diff(gpu.second[j].cpu(), cpu.second[j]) < (dt == torch::kFloat32 ? 1e-5 : 0.05));
    const double tol = dt == torch::kFloat32 ? 1e-4 : 0.1;  // ∂L/∂μ sums 900 terms in another order
    CHECK(max_diff(gpu.first.x.cpu(), cpu.first.x) < tol);
    CHECK(max_diff(gpu.first.prev.cpu(), cpu.first.prev) < tol);
    for (size_t j = 0; j < cpu.first.mu.size(); ++j) CHECK(max_diff(gpu.first.mu[j].cpu(), cpu.first.mu[j]) < tol * 30);
  }
}
