// The gate and activation CUDA kernels, run on the host (kernels/gates_host.h: the GPU's source,
// g++ and a loop over blocks × threads), against the CPU op (kernels/gates_op.h) on the pointers
// kernels/gates_op_cuda.cpp would pass (gate_kernel_args, relu_square_kernel_args), and against the
// formulas in double: every type pair, element counts below, at and past the 256-thread block and
// not a multiple of it, the sigmoid's saturation and relu's boundary. Outputs start as NaN, so an
// element the kernels never write fails too. Both sides run the same float arithmetic
// (kernels/gates_math.h, host_expf), so they are compared bit for bit.
#include <limits>

#include "kernels/gates_host.h"
#include "kernels/gates_op.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;
namespace kernels = rwkv::kernels;

const int64_t kCounts[] = {1, 13, 256, 257, 1000};

Tensor nans(int64_t n, torch::ScalarType dt) {
  return torch::full({n}, std::numeric_limits<float>::quiet_NaN(), torch::TensorOptions().dtype(dt));
}

// n values ~N(0, 3²), the first ones the edge cases of σ and relu.
Tensor values(int64_t n, torch::ScalarType dt) {
  Tensor t = torch::randn({n}, torch::kFloat64) * 3;
  const double edges[] = {0.0, -0.0, 100, -100, 88, -88, 17, -17, 2, -2};
  for (int64_t i = 0; i < n && i < static_cast<int64_t>(std::size(edges)); ++i) t[i] = edges[i];
  return t.to(dt);
}

double rel_diff(const Tensor& a, const Tensor& b) {
  const Tensor b64 = b.to(torch::kFloat64);
  return (a.to(torch::kFloat64) - b64).abs().max().item<double>() / std::max(b64.abs().max().item<double>(), 1e-300);
}

// The tolerance against the formula in double: the outputs' rounding.
double tol(torch::ScalarType dt) { return dt == torch::kBFloat16 ? 1e-2 : 1e-5; }

}  // namespace

TEST_CASE("gate kernels run on the host equal the CPU op and the formula", "[kernels]") {
  const torch::ScalarType types[] = {torch::kFloat32, torch::kBFloat16};
  uint64_t seed = 0;
  for (const int64_t n : kCounts)
    for (const auto rt : types)
      for (const auto yt : types) {
        CAPTURE(n, rt, yt);
        torch::manual_seed(++seed);
        const Tensor r = values(n, rt), y = torch::randn({n}).to(yt);
        const auto ot = kernels::gate_out_dtype(rt, yt);
        const Tensor g = torch::randn({n}).to(ot);
        // Forward.
        const kernels::GateForwardArgs cpu_f{r, y, torch::empty({n}, ot)};
        kernels::gate_forward(cpu_f);
        const kernels::GateForwardArgs host_f{r, y, nans(n, ot)};
        REQUIRE(kernels::host::gate_forward(kernels::gate_kernel_args(host_f), nullptr) == kernels::host::cudaSuccess);
        CHECK(torch::equal(host_f.out, cpu_f.out));
        const Tensor r64 = r.to(torch::kFloat64), y64 = y.to(torch::kFloat64), g64 = g.to(torch::kFloat64);
        const Tensor s64 = torch::sigmoid(r64);
        CHECK(rel_diff(host_f.out, s64 * y64) <= tol(ot));
        // Backward.
        const kernels::GateBackwardArgs cpu_b{r, y, g, torch::empty({n}, rt), torch::empty({n}, yt)};
        kernels::gate_backward(cpu_b);
        const kernels::GateBackwardArgs host_b{r, y, g, nans(n, rt), nans(n, yt)};
        REQUIRE(kernels::host::gate_backward(kernels::gate_kernel_args(host_b), nullptr) == kernels::host::cudaSuccess);
        CHECK(torch::equal(host_b.gr, cpu_b.gr));
        CHECK(torch::equal(host_b.gy, cpu_b.gy));
        CHECK(rel_diff(host_b.gy, g64 * s64) <= tol(yt));
        CHECK(rel_diff(host_b.gr, g64 * y64 * s64 * (1 - s64)) <= tol(rt));
      }
}

TEST_CASE("relu square kernels run on the host equal the CPU op and the formula", "[kernels]") {
  uint64_t seed = 100;
  for (const int64_t n : kCounts)
    for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
      CAPTURE(n, dt);
      torch::manual_seed(++seed);
      const Tensor k = values(n, dt), g = torch::randn({n}).to(dt);
      const kernels::ReluSquareForwardArgs cpu_f{k, torch::empty({n}, dt)};
      kernels::relu_square_forward(cpu_f);
      const kernels::ReluSquareForwardArgs host_f{k, nans(n, dt)};
      REQUIRE(kernels::host::relu_square_forward(kernels::relu_square_kernel_args(host_f), nullptr) ==
              kernels::host::cudaSuccess);
      CHECK(torch::equal(host_f.out, cpu_f.out));
      const Tensor k64 = k.to(torch::kFloat64), relu64 = k64.clamp_min(0);
      CHECK(rel_diff(host_f.out, relu64.square()) <= tol(dt));
      const kernels::ReluSquareBackwardArgs cpu_b{k, g, torch::empty({n}, dt)};
      kernels::relu_square_backward(cpu_b);
      const kernels::ReluSquareBackwardArgs host_b{k, g, nans(n, dt)};
      REQUIRE(kernels::host::relu_square_backward(kernels::relu_square_kernel_args(host_b), nullptr) ==
              kernels::host::cudaSuccess);
      CHECK(torch::equal(host_b.gk, cpu_b.gk));
      CHECK(rel_diff(host_b.gk, 2 * relu64 * g.to(torch::kFloat64)) <= tol(dt));
      // relu's boundary: no gradient at or below 0.
      CHECK(host_b.gk.masked_select(k <= 0).abs().max().item<double>() == 0.0);
    }
}
