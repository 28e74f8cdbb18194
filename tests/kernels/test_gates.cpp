// The fused sigmoid gate and squared ReLU (rwkv/gates.h, kernels/gates_op.h) against the
// formulation they replaced, written out here: torch::sigmoid(r) * y and torch::relu(k).square(),
// forward and gradients through autograd, in double and fp32 (≤ 1e-5 of each tensor's largest
// value), bf16 within bf16 rounding, mixed fp32/bf16 inputs with torch's result dtype; sizes that
// are not a multiple of anything (1, 7, 1221) and one past the CPU op's parallel grain; values that
// saturate the sigmoid (±17, ±88, ±100), relu's boundary at exactly 0 and NaN; the mixers under
// CPU bf16 autocast keep the unfused code's dtypes.
#include <ATen/autocast_mode.h>

#include <limits>

#include "kernels/gates_op.h"
#include "rwkv/channel_mix.h"
#include "rwkv/gates.h"
#include "rwkv/time_mix.h"
#include "rwkv/token_shift.h"
#include "rwkv/wkv.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;

const int64_t kSizes[] = {1, 7, 1221, (1 << 15) + 3};

// n values ~N(0, 4²) in double, the first ones replaced by the sigmoid's and relu's edge cases.
Tensor values(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  Tensor t = torch::randn({n}, torch::kFloat64) * 4;
  const double edges[] = {0.0, -0.0, 100, -100, 88, -88, 17, -17, 1e-30, -1e-30, 3, -3};
  for (int64_t i = 0; i < n && i < static_cast<int64_t>(std::size(edges)); ++i) t[i] = edges[i];
  return t;
}

// max |a − b| over max |b|: the error relative to the tensor's scale.
double rel_diff(const Tensor& a, const Tensor& b) {
  const Tensor b64 = b.to(torch::kFloat64);
  return (a.to(torch::kFloat64) - b64).abs().max().item<double>() / std::max(b64.abs().max().item<double>(), 1e-300);
}

Tensor leaf(const Tensor& t, torch::ScalarType dt) { return t.to(dt).detach().clone().requires_grad_(true); }

struct GateRun {
  Tensor out, gr, gy;
};

// σ(r)·y and the gradients of <out, w> through `gate` (the fused op or the unfused formula).
template <class Gate>
GateRun run_gate(const Tensor& r, const Tensor& y, const Tensor& w, torch::ScalarType rt, torch::ScalarType yt,
                 const Gate& gate) {
  const Tensor rl = leaf(r, rt), yl = leaf(y, yt);
  const Tensor out = gate(rl, yl);
  (out.to(torch::kFloat64) * w).sum().backward();
  return {out.detach(), rl.grad(), yl.grad()};
}

struct ReluRun {
  Tensor out, gk;
};

template <class Relu>
ReluRun run_relu(const Tensor& k, const Tensor& w, torch::ScalarType dt, const Relu& relu_sq) {
  const Tensor kl = leaf(k, dt);
  const Tensor out = relu_sq(kl);
  (out.to(torch::kFloat64) * w).sum().backward();
  return {out.detach(), kl.grad()};
}

const auto fused_gate = [](const Tensor& r, const Tensor& y) { return rwkv::sigmoid_gate(r, y); };
const auto naive_gate = [](const Tensor& r, const Tensor& y) { return torch::sigmoid(r) * y; };
const auto fused_relu = [](const Tensor& k) { return rwkv::relu_square(k); };
const auto naive_relu = [](const Tensor& k) { return torch::relu(k).square(); };

}  // namespace

TEST_CASE("sigmoid_gate equals sigmoid(r) * y, forward and gradients, double and fp32", "[kernels]") {
  uint64_t seed = 1;
  for (const int64_t n : kSizes)
    for (const auto dt : {torch::kFloat64, torch::kFloat32}) {
      CAPTURE(n, dt);
      const Tensor r = values(n, seed++), y = torch::randn({n}, torch::kFloat64), w = torch::randn({n}, torch::kFloat64);
      const GateRun got = run_gate(r, y, w, dt, dt, fused_gate), want = run_gate(r, y, w, dt, dt, naive_gate);
      CHECK(got.out.scalar_type() == dt);
      CHECK(got.gr.scalar_type() == dt);
      CHECK(got.gy.scalar_type() == dt);
      const double tol = dt == torch::kFloat64 ? 1e-13 : 1e-5;
      CHECK(rel_diff(got.out, want.out) <= tol);
      CHECK(rel_diff(got.gy, want.gy) <= tol);
      CHECK(rel_diff(got.gr, want.gr) <= tol);
      // Saturation in fp32 (the first edges: r = 100, −100): σ is exactly 1 and 0, as ATen's, and
      // so is ∂L/∂r there (e^{−100} is 0 in fp32).
      if (n >= 4 && dt == torch::kFloat32) {
        CHECK(torch::equal(got.out.narrow(0, 2, 2), want.out.narrow(0, 2, 2)));
        CHECK(got.out[3].item<double>() == 0.0);
        CHECK(got.gr.narrow(0, 2, 2).abs().max().item<double>() == 0.0);
      }
    }
}

TEST_CASE("relu_square equals relu(k).square(), forward and gradients, double and fp32, 0 at k = 0", "[kernels]") {
  uint64_t seed = 11;
  for (const int64_t n : kSizes)
    for (const auto dt : {torch::kFloat64, torch::kFloat32}) {
      CAPTURE(n, dt);
      const Tensor k = values(n, seed++), w = torch::randn({n}, torch::kFloat64);
      const ReluRun got = run_relu(k, w, dt, fused_relu), want = run_relu(k, w, dt, naive_relu);
      CHECK(got.out.scalar_type() == dt);
      CHECK(got.gk.scalar_type() == dt);
      // relu(k)² and 2·relu(k)·g are one or two roundings, the same in both.
      CHECK(rel_diff(got.out, want.out) <= (dt == torch::kFloat64 ? 1e-15 : 1e-7));
      CHECK(rel_diff(got.gk, want.gk) <= (dt == torch::kFloat64 ? 1e-15 : 1e-7));
      // Exactly torch's values at the boundary (k = 0 and −0) and below it.
      const Tensor at_or_below = k <= 0;
      CHECK(torch::equal(got.gk.masked_select(at_or_below), want.gk.masked_select(at_or_below)));
      CHECK(got.gk.masked_select(at_or_below).abs().max().item<double>() == 0.0);
      CHECK(torch::equal(got.out.masked_select(at_or_below), want.out.masked_select(at_or_below)));
    }
}

TEST_CASE("sigmoid_gate and relu_square in bf16 stay within bf16 rounding of the fp32 formula", "[kernels]") {
  const int64_t n = 1221;
  const Tensor r = values(n, 21), y = torch::randn({n}, torch::kFloat64), w = torch::randn({n}, torch::kFloat64);
  // The reference: the unfused formula in fp32 on the same bf16-rounded inputs.
  const Tensor rb = r.to(torch::kBFloat16).to(torch::kFloat64), yb = y.to(torch::kBFloat16).to(torch::kFloat64);
  const GateRun got = run_gate(r, y, w, torch::kBFloat16, torch::kBFloat16, fused_gate);
  const GateRun ref = run_gate(rb, yb, w, torch::kFloat32, torch::kFloat32, naive_gate);
  const GateRun old = run_gate(r, y, w, torch::kBFloat16, torch::kBFloat16, naive_gate);
  CHECK(got.out.scalar_type() == torch::kBFloat16);
  CHECK(got.gr.scalar_type() == torch::kBFloat16);
  CHECK(got.gy.scalar_type() == torch::kBFloat16);
  CHECK(rel_diff(got.out, ref.out) <= 1e-2);
  CHECK(rel_diff(got.gr, ref.gr) <= 1e-2);
  CHECK(rel_diff(got.gy, ref.gy) <= 1e-2);
  // The unfused bf16 code rounds σ(r) before the product: within two bf16 roundings of it.
  CHECK(rel_diff(got.out, old.out) <= 2e-2);

  const ReluRun rgot = run_relu(r, w, torch::kBFloat16, fused_relu);
  const ReluRun rref = run_relu(rb, w, torch::kFloat32, naive_relu);
  CHECK(rgot.out.scalar_type() == torch::kBFloat16);
  CHECK(rgot.gk.scalar_type() == torch::kBFloat16);
  CHECK(rel_diff(rgot.out, rref.out) <= 1e-2);
  CHECK(rel_diff(rgot.gk, rref.gk) <= 1e-2);
}

TEST_CASE("sigmoid_gate of fp32 and bf16 inputs has torch's result dtype, gradients in each input's", "[kernels]") {
  const int64_t n = 37;
  const Tensor r = values(n, 31), y = torch::randn({n}, torch::kFloat64), w = torch::randn({n}, torch::kFloat64);
  const std::pair<torch::ScalarType, torch::ScalarType> pairs[] = {{torch::kBFloat16, torch::kFloat32},
                                                                   {torch::kFloat32, torch::kBFloat16}};
  for (const auto& [rt, yt] : pairs) {
    CAPTURE(rt, yt);
    const GateRun got = run_gate(r, y, w, rt, yt, fused_gate), old = run_gate(r, y, w, rt, yt, naive_gate);
    // fp32 arithmetic on the inputs as given (each rounded to its dtype), as the reference.
    const Tensor rr = r.to(rt).to(torch::kFloat64), yr = y.to(yt).to(torch::kFloat64);
    const GateRun ref = run_gate(rr, yr, w, torch::kFloat32, torch::kFloat32, naive_gate);
    CHECK(got.out.scalar_type() == old.out.scalar_type());
    CHECK(got.out.scalar_type() == torch::kFloat32);
    CHECK(got.gr.scalar_type() == rt);
    CHECK(got.gy.scalar_type() == yt);
    CHECK(rel_diff(got.out, ref.out) <= 1e-5);
    CHECK(rel_diff(got.gr, ref.gr) <= (rt == torch::kFloat32 ? 1e-5 : 1e-2));
    CHECK(rel_diff(got.gy, ref.gy) <= (yt == torch::kFloat32 ? 1e-5 : 1e-2));
  }
}

TEST_CASE("sigmoid_gate and relu_square propagate NaN as torch does and take non-contiguous inputs", "[kernels]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor nans = torch::full({3}, nan, torch::kFloat64);
  CHECK(rwkv::sigmoid_gate(nans, torch::ones({3}, torch::kFloat64)).isnan().all().item<bool>());
  CHECK(rwkv::relu_square(nans.to(torch::kFloat32)).isnan().all().item<bool>());
  CHECK(torch::relu(nans).square().isnan().all().item<bool>());  // the behaviour kept

  torch::manual_seed(41);
  const Tensor r = torch::randn({5, 9}).t(), y = torch::randn({5, 9}).t(), k = torch::randn({9, 5}).t();
  REQUIRE_FALSE(r.is_contiguous());
  CHECK(rel_diff(rwkv::sigmoid_gate(r, y), torch::sigmoid(r) * y) <= 1e-6);
  CHECK(rel_diff(rwkv::relu_square(k), torch::relu(k).square()) <= 1e-7);
  CHECK(rwkv::sigmoid_gate(torch::empty({0, 4}), torch::empty({0, 4})).sizes() == at::IntArrayRef{0, 4});
}

TEST_CASE("sigmoid_gate and relu_square reject bad arguments with a clear message", "[kernels]") {
  const Tensor r = torch::randn({2, 3});
  CHECK_THROWS_WITH(rwkv::sigmoid_gate(r, torch::randn({3, 2})), Catch::Contains("no broadcasting"));
  CHECK_THROWS_WITH(rwkv::sigmoid_gate(r.to(torch::kHalf), r), Catch::Contains("r dtype must be"));
  CHECK_THROWS_WITH(rwkv::sigmoid_gate(r.to(torch::kFloat64), r), Catch::Contains("both be float64"));
  CHECK_THROWS_WITH(rwkv::relu_square(r.to(torch::kInt32)), Catch::Contains("k dtype must be"));
  const rwkv::kernels::GateForwardArgs a{r, r, torch::empty({2, 3}, torch::kBFloat16)};
  CHECK_THROWS_WITH(rwkv::kernels::gate_forward(a), Catch::Contains("out has dtype"));
}

TEST_CASE("TimeMix and ChannelMix under CPU bf16 autocast keep the unfused code's dtypes and values", "[kernels]") {
  rwkv::ModelConfig cfg;
  cfg.n_layer = 2;
  cfg.n_embd = 24;
  cfg.vocab_size = 16;
  torch::manual_seed(51);
  rwkv::TimeMix att(cfg, torch::TensorOptions());
  rwkv::ChannelMix ffn(cfg, torch::TensorOptions());
  // The zero-initialised matrices would make every gate input 0: random weights instead.
  for (auto& p : att->parameters()) p.data().normal_(0, 0.5);
  for (auto& p : ffn->parameters()) p.data().normal_(0, 0.5);
  const Tensor x = torch::randn({2, 5, 24});
  // The unfused forms, on the modules' own layers.
  const auto att_naive = [&] {
    const auto mixed = rwkv::token_shift_mix(x, Tensor(), {att->time_mix_k, att->time_mix_v, att->time_mix_r});
    const auto y = rwkv::wkv(att->time_decay, att->time_first, att->key(mixed[0]), att->value(mixed[1])).y;
    return att->output(torch::sigmoid(att->receptance(mixed[2])) * y);
  };
  const auto ffn_naive = [&] {
    const auto mixed = rwkv::token_shift_mix(x, Tensor(), {ffn->time_mix_k, ffn->time_mix_r});
    return torch::sigmoid(ffn->receptance(mixed[1])) * ffn->value(torch::relu(ffn->key(mixed[0])).square());
  };
  for (const bool autocast : {false, true}) {
    CAPTURE(autocast);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, autocast);
    const Tensor a_got = att->forward(x), a_want = att_naive(), f_got = ffn->forward(x), f_want = ffn_naive();
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
    CHECK(a_got.scalar_type() == a_want.scalar_type());
    CHECK(f_got.scalar_type() == f_want.scalar_type());
    CHECK(f_got.scalar_type() == (autocast ? torch::kBFloat16 : torch::kFloat32));
    const double tol = autocast ? 2e-2 : 1e-5;
    CHECK(rel_diff(a_got, a_want) <= tol);
    CHECK(rel_diff(f_got, f_want) <= tol);
  }
}
