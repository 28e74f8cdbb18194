// The fused cross-entropy + L2Wrap (kernels/cross_entropy_op.h): the CPU op and the CUDA kernels
// run on the host (kernels/cross_entropy_host.h: the GPU's source through g++ and a loop over
// blocks × threads) against the naive formula in double, for fp64 (CPU op only), fp32 and bf16
// logits. Shapes cover a vocabulary smaller than the 32 slices and the 16 lanes, one that neither
// divides, and the real 50277; row counts leave the last 256-thread block partial. Outputs start
// as NaN, so an element the kernels never write fails. Ties of the maximum: the first index wins,
// as torch's max(dim) — across lanes, slices and equal bf16 roundings; a NaN is the maximum.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cross_entropy_host.h"
#include "kernels/cross_entropy_op.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;
namespace kernels = rwkv::kernels;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The formula of kernels/README.md "Cross-entropy and L2Wrap" in double, loops only.
struct Reference {
  double loss = 0;
  std::vector<double> lse, max;
  std::vector<int64_t> argmax;
  Tensor grad;  // (N, V) double
};

Reference naive(const Tensor& logits, const Tensor& targets, double factor, double g) {
  const auto x = logits.to(torch::kFloat64).contiguous();
  const int64_t N = x.size(0), V = x.size(1);
  auto xa = x.accessor<double, 2>();
  auto ta = targets.accessor<int64_t, 1>();
  Reference r;
  r.grad = torch::empty({N, V}, torch::kFloat64);
  auto ga = r.grad.accessor<double, 2>();
  for (int64_t n = 0; n < N; ++n) {
    int64_t a = 0;
    for (int64_t v = 1; v < V; ++v) {
      const bool v_nan = std::isnan(xa[n][v]), a_nan = std::isnan(xa[n][a]);
      if (!a_nan && (v_nan || xa[n][v] > xa[n][a])) a = v;
    }
    const double m = xa[n][a];
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(xa[n][v] - m);
    const double lse = m + std::log(sum);
    r.lse.push_back(lse);
    r.max.push_back(m);
    r.argmax.push_back(a);
    r.loss += (lse - xa[n][ta[n]]) / static_cast<double>(N);
    for (int64_t v = 0; v < V; ++v)
      ga[n][v] = g / static_cast<double>(N) *
                 (std::exp(xa[n][v] - lse) - (v == ta[n] ? 1.0 : 0.0) + (v == a ? factor * m : 0.0));
  }
  return r;
}

struct Result {
  double loss;
  kernels::XentRows rows;
  Tensor grad;
};

Result cpu_op(const Tensor& logits, const Tensor& targets, double factor, double g) {
  auto f = kernels::cross_entropy_forward(logits, targets);
  const auto gl = torch::full({}, g, f.loss.options());
  return {f.loss.item<double>(), f.rows, kernels::cross_entropy_backward(logits, targets, f.rows, gl, factor)};
}

Result host_kernels(const Tensor& logits, const Tensor& targets, double factor, double g) {
  namespace host = kernels::host;
  kernels::XentRows rows = kernels::xent_empty_rows(logits);
  rows.lse.fill_(kNaN);
  rows.max.fill_(kNaN);
  rows.argmax.fill_(-7);
  kernels::XentWorkspace ws = kernels::xent_workspace(logits);
  ws.row_loss.fill_(kNaN);
  const auto io = kernels::xent_kernel_io(logits);
  REQUIRE(host::xent_forward(io, kernels::xent_kernel_args(logits, targets, rows, ws), nullptr) == host::cudaSuccess);
  auto grad = torch::full_like(logits, kNaN);
  const auto gl = torch::full({1}, g, torch::kFloat32);
  REQUIRE(host::xent_backward(io, kernels::xent_kernel_args(logits, targets, rows, gl, factor, grad), nullptr) ==
          host::cudaSuccess);
  return {ws.row_loss.to(torch::kFloat64).mean().item<double>(), rows, grad};
}

// |got − want| ≤ atol + rtol·|want| everywhere (NaN fails).
void check_close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  const auto g = got.to(torch::kFloat64), w = want.to(torch::kFloat64);
  const auto excess = ((g - w).abs() - (atol + rtol * w.abs())).max().item<double>();
  CAPTURE(rtol, atol, (g - w).abs().max().item<double>());
  CHECK(excess <= 0);
}

void check_result(const Result& got, const Reference& want, double rtol, double grad_rtol, double grad_atol, double g,
                  int64_t N) {
  CHECK(std::abs(got.loss - want.loss) <= rtol * std::abs(want.loss));
  CHECK(got.rows.argmax.to(torch::kLong).equal(torch::tensor(want.argmax, torch::kLong)));
  check_close(got.rows.lse, torch::tensor(want.lse, torch::kFloat64), rtol, 0);
  check_close(got.rows.max, torch::tensor(want.max, torch::kFloat64), 0, 0);
  // Absolute: a probability is known to its type's precision, so near the target's p − 1 (a
  // cancellation) the error is that of p, not relative to the difference.
  check_close(got.grad, want.grad, grad_rtol, grad_atol * g / static_cast<double>(N));
}

struct Shape {
  int64_t N, V;
};
const Shape kShapes[] = {{37, 1000}, {5, 7}, {3, 50277}, {260, 45}};

}  // namespace

TEST_CASE("fused cross-entropy: CPU op and host-run kernels equal the naive formula in double", "[kernels]") {
  for (const auto& s : kShapes) {
    for (const auto dtype : {torch::kFloat64, torch::kFloat32, torch::kBFloat16}) {
      for (const double factor : {1e-4, 0.0, 0.3}) {
        CAPTURE(s.N, s.V, dtype, factor);
        torch::manual_seed(s.N * 31 + s.V);
        // Spread wide enough that the L2Wrap term is visible and the softmax far from uniform.
        const auto logits = (torch::randn({s.N, s.V}, torch::kFloat64) * 4 + 2).to(dtype);
        const auto targets = torch::randint(s.V, {s.N}, torch::kLong);
        const double g = 0.25;  // a micro-batch's share under grad_accum = 4
        const Reference want = naive(logits, targets, factor, g);
        // fp64: rounding only; fp32 and bf16 compute in fp32 (host_expf ≈ 2 ulp); bf16 gradients
        // are rounded to bf16 (2⁻⁹ relative).
        const double rtol = dtype == torch::kFloat64 ? 1e-12 : 2e-6;
        const double grad_rtol = dtype == torch::kFloat64 ? 1e-12 : dtype == torch::kFloat32 ? 2e-5 : 4.5e-3;
        const double grad_atol = dtype == torch::kFloat64 ? 1e-15 : 1e-6;
        check_result(cpu_op(logits, targets, factor, g), want, rtol, grad_rtol, grad_atol, g, s.N);
        if (dtype != torch::kFloat64)
          check_result(host_kernels(logits, targets, factor, g), want, rtol, grad_rtol, grad_atol, g, s.N);
      }
    }
  }
}

TEST_CASE("fused cross-entropy: ties of the maximum go to the first index, as torch's max(dim); NaN wins",
          "[kernels]") {
  const int64_t V = 100;
  // Pairs of equal maxima: both in one lane of 16 or one slice of 32, across lanes and slices, at the
  // ends, and adjacent.
  const std::vector<std::pair<int64_t, int64_t>> ties{{3, 40}, {0, 99}, {31, 32}, {17, 49}, {64, 96}, {5, 21}, {98, 99}};
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    CAPTURE(dtype);
    torch::manual_seed(3);
    auto logits = torch::randn({static_cast<int64_t>(ties.size()) + 2, V}, torch::kFloat32);
    for (size_t r = 0; r < ties.size(); ++r) {
      logits[r][ties[r].first] = 7.0f;
      logits[r][ties[r].second] = 7.0f;
    }
    // Distinct in fp32, equal once rounded to bf16: the later index is larger in fp32.
    const int64_t round_row = static_cast<int64_t>(ties.size());
    logits[round_row][10] = 7.0f;
    logits[round_row][60] = 7.0f + 1.0f / 256;
    const int64_t nan_row = round_row + 1;
    logits[nan_row][50] = std::nanf("");
    logits[nan_row][70] = std::nanf("");
    const auto x = logits.to(dtype);
    const auto targets = torch::zeros({x.size(0)}, torch::kLong);
    const auto torch_index = std::get<1>(x.max(-1));
    for (const auto& got : {cpu_op(x, targets, 1e-4, 1.0), host_kernels(x, targets, 1e-4, 1.0)}) {
      const auto index = got.rows.argmax;
      CHECK(index.equal(torch_index));
      for (size_t r = 0; r < ties.size(); ++r) CHECK(index[r].item<int64_t>() == ties[r].first);
      CHECK(index[round_row].item<int64_t>() == (dtype == torch::kBFloat16 ? 10 : 60));
      CHECK(index[nan_row].item<int64_t>() == 50);
      CHECK(std::isnan(got.loss));
    }
  }
}

TEST_CASE("fused cross-entropy: bad input is refused with a message naming it", "[kernels]") {
  const auto logits = torch::randn({4, 10});
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(kernels::cross_entropy_forward(logits, torch::tensor({0, 3, 10, 2}, torch::kLong)),
                    Contains("target 10 of row 2 is outside the vocabulary [0, 10)"));
  CHECK_THROWS_WITH(kernels::cross_entropy_forward(logits, torch::tensor({0, -1, 1, 2}, torch::kLong)),
                    Contains("target -1 of row 1"));
  CHECK_THROWS_WITH(kernels::cross_entropy_forward(logits, torch::zeros({4}, torch::kInt)),
                    Contains("targets must be int64"));
  CHECK_THROWS_WITH(kernels::cross_entropy_forward(logits, torch::zeros({3}, torch::kLong)),
                    Contains("targets must be (4)"));
  CHECK_THROWS_WITH(kernels::cross_entropy_forward(logits.to(torch::kHalf), torch::zeros({4}, torch::kLong)),
                    Contains("logits must be float32 or bfloat16"));
  CHECK_THROWS_WITH(kernels::cross_entropy_forward(logits.t(), torch::zeros({10}, torch::kLong)),
                    Contains("logits must be contiguous"));
  const auto f = kernels::cross_entropy_forward(logits, torch::zeros({4}, torch::kLong));
  CHECK_THROWS_WITH(
      kernels::cross_entropy_backward(logits, torch::zeros({4}, torch::kLong), f.rows, torch::ones({2}), 1e-4),
      Contains("the loss gradient must be one"));
  // The kernels cannot throw on the device: an out-of-range target makes that row's loss NaN.
  auto ws = kernels::xent_workspace(logits);
  auto rows = kernels::xent_empty_rows(logits);
  const auto bad = torch::tensor({0, 3, 10, 2}, torch::kLong);
  REQUIRE(kernels::host::xent_forward(kernels::XentIo::f32, kernels::xent_kernel_args(logits, bad, rows, ws),
                                      nullptr) == kernels::host::cudaSuccess);
  CHECK(std::isnan(ws.row_loss[2].item<float>()));
  CHECK(std::isfinite(ws.row_loss[1].item<float>()));
}
