// The training loss (trainer/train/cross_entropy_l2wrap.h), one fused autograd function, against
// the formulation it replaced: torch's cross_entropy on an fp32 copy of the logits plus the
// separate L2Wrap function (trainer/bench/bench_loss.h keeps it as the benchmark's peer), for fp64,
// fp32 and bf16 logits; the arg-max on ties; the loss value untouched by L2Wrap; and the
// gradient-accumulation scaling: micro-batches scaled by 1/grad_accum sum to the big batch's gradient.
#include <catch2/catch.hpp>

#include "trainer/bench/bench_loss.h"
#include "trainer/train/cross_entropy_l2wrap.h"

using rwkv::trainer::cross_entropy_l2wrap;
using torch::Tensor;

namespace {

// The replaced formulation, kept as `rwkv bench loss`'s peer.
Tensor unfused(const Tensor& logits, const Tensor& targets, double factor) {
  return rwkv::bench::unfused_cross_entropy_l2wrap(logits, targets, factor);
}

struct LossGrad {
  double loss;
  Tensor grad;
};

template <class Fn>
LossGrad run(const Fn& loss_fn, const Tensor& logits0, const Tensor& targets, double factor, double scale) {
  auto logits = logits0.clone().requires_grad_();
  const auto loss = loss_fn(logits, targets, factor);
  (loss * scale).backward();
  return {loss.template item<double>(), logits.grad()};
}

double max_excess(const Tensor& got, const Tensor& want, double rtol, double atol) {
  const auto g = got.to(torch::kFloat64), w = want.to(torch::kFloat64);
  return ((g - w).abs() - (atol + rtol * w.abs())).max().item<double>();
}

}  // namespace

TEST_CASE("fused cross-entropy + L2Wrap equals the unfused formulation in fp64, fp32 and bf16", "[train]") {
  for (const auto dtype : {torch::kFloat64, torch::kFloat32, torch::kBFloat16}) {
    for (const auto& [B, T, V] : {std::tuple{3, 5, 11}, std::tuple{2, 7, 300}}) {
      for (const double factor : {1e-4, 0.0, 0.5}) {
        for (const double scale : {1.0, 0.25}) {  // 0.25: a micro-batch's loss under grad_accum = 4
          CAPTURE(dtype, B, T, V, factor, scale);
          torch::manual_seed(B * 100 + V);
          const auto logits = (torch::randn({B, T, V}, torch::kFloat64) * 4).to(dtype);
          const auto targets = torch::randint(V, {B, T}, torch::kLong);
          const LossGrad fused = run(cross_entropy_l2wrap, logits, targets, factor, scale);
          const LossGrad want = run(unfused, logits, targets, factor, scale);
          const double per_position = scale / (B * T);
          if (dtype == torch::kFloat64) {
            CHECK(fused.loss == Approx(want.loss).epsilon(1e-13));
            CHECK(max_excess(fused.grad, want.grad, 1e-12, 1e-16 * per_position) <= 0);
          } else {
            CHECK(fused.loss == Approx(want.loss).epsilon(3e-6));
            // fp32: a probability to ~1e-7 absolute; bf16: both sides rounded to bf16 (2⁻⁹ each),
            // the unfused one twice (its cross-entropy and L2Wrap parts added in bf16).
            const double rtol = dtype == torch::kFloat32 ? 2e-5 : 8e-3;
            CHECK(max_excess(fused.grad, want.grad, rtol, 1e-6 * per_position) <= 0);
          }
          CHECK(fused.grad.scalar_type() == dtype);
          // L2Wrap changes the gradient only: the value is the plain mean cross-entropy.
          CHECK(fused.loss == run(cross_entropy_l2wrap, logits, targets, 0.0, scale).loss);
        }
      }
    }
  }
}

TEST_CASE("fused L2Wrap pushes the first arg-max on ties, where the unfused one (torch's max) pushed", "[train]") {
  const int64_t V = 40;
  torch::manual_seed(5);
  auto logits = torch::randn({1, 6, V}, torch::kFloat64);
  const std::vector<std::pair<int64_t, int64_t>> ties{{2, 30}, {0, 39}, {15, 16}, {7, 23}, {31, 32}, {1, 33}};
  for (size_t r = 0; r < ties.size(); ++r) {
    logits[0][r][ties[r].first] = 6.0;
    logits[0][r][ties[r].second] = 6.0;
  }
  const auto targets = torch::full({1, 6}, 10, torch::kLong);  // in no tie
  for (const auto dtype : {torch::kFloat64, torch::kFloat32, torch::kBFloat16}) {
    CAPTURE(dtype);
    // A large factor, so that a push at the wrong index of a tie would stand out.
    const LossGrad fused = run(cross_entropy_l2wrap, logits.to(dtype), targets, 0.5, 1.0);
    const LossGrad want = run(unfused, logits.to(dtype), targets, 0.5, 1.0);
    CHECK(max_excess(fused.grad, want.grad, dtype == torch::kBFloat16 ? 8e-3 : 1e-5, 1e-7) <= 0);
    for (size_t r = 0; r < ties.size(); ++r) {
      const auto row = fused.grad[0][r].to(torch::kFloat64);
      CHECK(row[ties[r].first].item<double>() - row[ties[r].second].item<double>() == Approx(0.5 * 6.0 / 6).epsilon(1e-2));
    }
  }
}

TEST_CASE("fused loss: micro-batches scaled by 1/grad_accum give one big batch's gradient, L2Wrap included",
          "[train]") {
  torch::manual_seed(9);
  const int64_t T = 5, V = 23;
  const auto a = torch::randn({2, T, V}, torch::kFloat64) * 3, b = torch::randn({2, T, V}, torch::kFloat64) * 3;
  const auto ta = torch::randint(V, {2, T}, torch::kLong), tb = torch::randint(V, {2, T}, torch::kLong);
  const LossGrad ga = run(cross_entropy_l2wrap, a, ta, 0.5, 0.5), gb = run(cross_entropy_l2wrap, b, tb, 0.5, 0.5);
  const LossGrad whole = run(cross_entropy_l2wrap, torch::cat({a, b}), torch::cat({ta, tb}), 0.5, 1.0);
  CHECK(max_excess(torch::cat({ga.grad, gb.grad}), whole.grad, 1e-13, 1e-17) <= 0);
  CHECK((ga.loss + gb.loss) / 2 == Approx(whole.loss).epsilon(1e-14));
}

TEST_CASE("fused loss: targets of another shape than the logits' positions are refused", "[train]") {
  const auto logits = torch::randn({2, 3, 5});
  CHECK_THROWS_WITH(cross_entropy_l2wrap(logits, torch::zeros({2, 4}, torch::kLong), 1e-4),
                    Catch::Matchers::Contains("targets of shape [2, 4] do not match logits [2, 3, 5]"));
}
