#include <fmt/format.h>
#include <torch/torch.h>

#include "kernels/cuda_runtime_info.h"
#include "trainer/cli/commands.h"

namespace rwkv::cli {

void add_env_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("env", "Print the LibTorch build, threads and CUDA devices");
  cmd->callback([] {
    fmt::print("libtorch: {}\n", TORCH_VERSION);
    fmt::print("cpu threads: {}\n", at::get_num_threads());
    fmt::print("cuda kernels compiled: {}", kernels::cuda_compiled() ? "yes" : "no");
    if (kernels::cuda_compiled()) fmt::print(" (arch {})", kernels::cuda_compiled_archs());
    fmt::print("\ncuda devices: {} (torch: {})\n", kernels::cuda_runtime_device_count(),
               torch::cuda::device_count());
  });
}

}  // namespace rwkv::cli
