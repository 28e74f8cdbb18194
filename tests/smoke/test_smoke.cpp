// Smoke: LibTorch computes, and the CUDA translation unit is in the link and agrees with torch
// about the devices (0 on a GPU-less machine, without crashing).
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include "kernels/cuda_runtime_info.h"
#include "tests/support/test_util.h"

TEST_CASE("libtorch matmul equals the schoolbook product", "[smoke]") {
  torch::manual_seed(0);
  auto a = torch::randn({5, 7}, torch::kFloat64);
  auto b = torch::randn({7, 3}, torch::kFloat64);
  auto c = torch::matmul(a, b);
  auto pa = a.accessor<double, 2>(), pb = b.accessor<double, 2>();
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 7; ++k) s += pa[i][k] * pb[k][j];
      REQUIRE(c[i][j].item<double>() == Approx(s).epsilon(1e-12));
    }
}

TEST_CASE("CUDA runtime and torch agree on the visible devices", "[smoke]") {
  const int ours = rwkv::kernels::cuda_runtime_device_count();
  REQUIRE(ours == static_cast<int>(torch::cuda::device_count()));
  if (rwkv::kernels::cuda_compiled()) {
    REQUIRE(rwkv::kernels::cuda_compiled_archs().find("8.0") != std::string::npos);
    REQUIRE(rwkv::kernels::cuda_compiled_archs().find("9.0") != std::string::npos);
  }
}

TEST_CASE("the rwkv binary runs and reports the LibTorch it was built with", "[smoke]") {
  std::string out;
  REQUIRE(rwkv::test::run(rwkv::test::rwkv_binary().string() + " env", &out) == 0);
  REQUIRE_THAT(out, Catch::Contains(std::string("libtorch: ") + TORCH_VERSION));
  REQUIRE(rwkv::test::run(rwkv::test::rwkv_binary().string() + " no-such-command", &out) != 0);
}
