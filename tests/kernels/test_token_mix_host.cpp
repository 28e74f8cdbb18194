// The token-shift mix CUDA kernels, run on the host (kernels/token_mix_host.h: the GPU's source,
// g++ and a loop over blocks × threads), against the CPU op (kernels/token_mix_op.h) on the
// pointers kernels/token_mix_op_cuda.cpp would pass (token_mix_kernel_args): every I/O pair, μ in
// fp32 and in bf16 (read as stored), 1 to 3 mixes, with and without a carried row, chunks of 1, 7, 16, T and more than T tokens, and
// B·chunks·C not a multiple of the 256-thread block. Outputs start as NaN, so an element the
// kernels never write fails too. The same float arithmetic runs on both sides, so the mixes and
// ∂L/∂x are compared bit for bit; ∂L/∂μ is summed in another grouping.
#include <limits>

#include "kernels/token_mix_host.h"
#include "kernels/token_mix_op.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;
namespace kernels = rwkv::kernels;

struct Shape {
  int64_t B, T, C;
};
const Shape kShapes[] = {{3, 37, 45}, {1, 16, 5}, {2, 20, 64}};

Tensor nans(at::IntArrayRef shape, torch::ScalarType dt) {
  return torch::full(shape, std::numeric_limits<float>::quiet_NaN(), torch::TensorOptions().dtype(dt));
}

double max_diff(const Tensor& a, const Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("token mix kernels run on the host equal the CPU op", "[kernels]") {
  const std::pair<torch::ScalarType, torch::ScalarType> ios[] = {
      {torch::kFloat32, torch::kFloat32}, {torch::kFloat32, torch::kBFloat16}, {torch::kBFloat16, torch::kBFloat16}};
  uint64_t seed = 0;
  for (const Shape& s : kShapes)
    for (const auto& [xt, yt] : ios)
    for (const auto mt : {torch::kFloat32, torch::kBFloat16})
      for (int mixes = 1; mixes <= 3; ++mixes)
        for (const bool with_prev : {false, true})
          for (const int64_t chunk : {int64_t{1}, int64_t{7}, kernels::kTokenMixChunk, s.T, s.T + 5}) {
            CAPTURE(s.B, s.T, s.C, xt, yt, mt, mixes, with_prev, chunk);
            torch::manual_seed(++seed);
            const Tensor x = torch::randn({s.B, s.T, s.C}).to(xt);
            const Tensor prev = with_prev ? torch::randn({s.B, s.C}).to(xt) : Tensor();
            std::vector<Tensor> mu, gout;
            for (int m = 0; m < mixes; ++m) {
              mu.push_back(torch::rand({s.C}).to(mt));
              gout.push_back(torch::randn({s.B, s.T, s.C}).to(yt));
            }
            const auto outs = [&](bool nan) {
              std::vector<Tensor> o;
              for (int m = 0; m < mixes; ++m) o.push_back(nan ? nans({s.B, s.T, s.C}, yt) : torch::empty({s.B, s.T, s.C}, yt));
              return o;
            };
            // Forward.
            const kernels::TokenMixForwardArgs cpu_f{x, prev, mu, outs(false)};
            kernels::token_mix_forward(cpu_f);
            const kernels::TokenMixForwardArgs host_f{x, prev, mu, outs(true)};
            const kernels::TokenMixIo io = kernels::token_mix_kernel_io(x, host_f.out[0]);
            REQUIRE(kernels::host::token_mix_forward(io, kernels::token_mix_kernel_args(host_f, chunk), nullptr) ==
                    kernels::host::cudaSuccess);
            for (int m = 0; m < mixes; ++m) CHECK(torch::equal(host_f.out[m], cpu_f.out[m]));
            // Backward.
            kernels::TokenMixBackwardArgs cpu_b{x, prev, mu, gout, torch::empty_like(x),
                                                with_prev ? torch::empty_like(prev) : Tensor(), {}};
            for (int m = 0; m < mixes; ++m) cpu_b.gmu.push_back(torch::empty({s.C}, mt));
            kernels::token_mix_backward(cpu_b);
            kernels::TokenMixBackwardArgs host_b{x, prev, mu, gout, nans(x.sizes(), xt),
                                                 with_prev ? nans(prev.sizes(), xt) : Tensor(), {}};
            const Tensor partial = nans({mixes, s.B * ((s.T + chunk - 1) / chunk), s.C}, torch::kFloat32);
            REQUIRE(kernels::host::token_mix_backward(io, kernels::token_mix_kernel_args(host_b, chunk, partial),
                                                      nullptr) == kernels::host::cudaSuccess);
            CHECK(torch::equal(host_b.gx, cpu_b.gx));
            if (with_prev) CHECK(torch::equal(host_b.gprev, cpu_b.gprev));
            const Tensor gmu = partial.sum(1);
            for (int m = 0; m < mixes; ++m) {
              // Sums of B·T terms of O(1) in fp32, grouped differently; the CPU op's rounded once
              // to bf16 μ's dtype (relative step 2^-8).
              CHECK(cpu_b.gmu[m].scalar_type() == mt);
              const double rounding = mt == torch::kBFloat16 ? cpu_b.gmu[m].abs().max().item<double>() / 256 : 0;
              CHECK(max_diff(gmu[m], cpu_b.gmu[m]) < 1e-4 + rounding);
            }
          }
}
