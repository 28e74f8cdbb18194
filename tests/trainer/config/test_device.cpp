// trainer/config/device.h: every device request (train.device, --device) resolves in one place.
#include <catch2/catch.hpp>

#include "trainer/config/device.h"

using rwkv::trainer::resolve_device;

TEST_CASE("resolve_device reads auto, cpu, cuda and cuda:N and refuses anything else by name", "[config]") {
  CHECK(resolve_device("cpu").is_cpu());
  const bool gpu = torch::cuda::device_count() > 0;
  CHECK(resolve_device("auto").is_cuda() == gpu);
  for (const char* bad : {"gpu", "CPU", "cuda:x", "cpu:1", "mps", "", "cuda:-1"}) {
    INFO(bad);
    CHECK_THROWS_WITH(resolve_device(bad), Catch::Contains(std::string("'") + bad + "'") &&
                                               Catch::Contains("expected auto, cpu, cuda or cuda:N"));
  }
  if (!gpu) {
    CHECK_THROWS_WITH(resolve_device("cuda"), Catch::Contains("torch sees no CUDA device"));
    CHECK_THROWS_WITH(resolve_device("cuda:0"), Catch::Contains("torch sees no CUDA device"));
  } else {
    // "cuda" is the local rank's GPU, modulo the visible ones (one GPU per task under Slurm).
    const auto n = static_cast<int>(torch::cuda::device_count());
    CHECK(resolve_device("cuda", n).index() == 0);
    CHECK_THROWS_WITH(resolve_device("cuda:" + std::to_string(n)), Catch::Contains("CUDA device(s)"));
  }
}
