// `rwkv plan CONFIG --gpus N --gpu-mem GB [--micro-batch B --ctx T --segment S]`: per-GPU memory of the
// config's model under DDP, ZeRO-1 and ZeRO-2, with and without activation checkpointing, and a
// recommendation (trainer/dist/memory_plan.h).
#include <fmt/format.h>

#include "rwkv/model_config.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/option_checks.h"
#include "trainer/config/model_config_yaml.h"
#include "trainer/dist/memory_plan.h"

namespace rwkv::cli {

void add_plan_command(CLI::App& app) {
  struct Args {
    std::string config;
    int gpus = 8;
    double gpu_mem_gb = 80;
    double reserve_gb = 4;
    int64_t micro_batch = 1;
    int64_t ctx = 1024;
    int64_t segment = 0;
    bool fp32 = false;
    double bucket_mb = 25;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("plan", "Per-GPU memory for DDP / ZeRO-1 / ZeRO-2 and a recommendation");
  cmd->add_option("config", args->config, "YAML config (its model: section is used)")->required();
  cmd->add_option("--gpus", args->gpus, "number of GPUs (ranks)")->check(CLI::PositiveNumber);
  cmd->add_option("--gpu-mem", args->gpu_mem_gb, "memory per GPU in GB")->check(finite_positive);
  cmd->add_option("--reserve", args->reserve_gb, "GB per GPU kept for the CUDA context and allocator")
      ->check(finite_non_negative);
  cmd->add_option("--micro-batch", args->micro_batch, "sequences per GPU per micro-step")->check(CLI::PositiveNumber);
  cmd->add_option("--ctx", args->ctx, "context length")->check(CLI::PositiveNumber);
  cmd->add_option("--segment", args->segment, "tokens per segment (train.segment_len; 0: the whole sample)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--fp32", args->fp32, "fp32 training instead of bf16 parameters with fp32 masters");
  cmd->add_option("--bucket-mb", args->bucket_mb, "gradient bucket size in MiB (train.grad_bucket_mb)")
      ->check(CLI::PositiveNumber);
  cmd->callback([args] {
    PlanRequest req;
    req.model = model_config_from_file(args->config);
    req.gpus = args->gpus;
    req.micro_batch = args->micro_batch;
    req.ctx_len = args->ctx;
    req.segment_len = args->segment;
    req.compute_bytes = args->fp32 ? 4 : 2;
    req.bucket_bytes = args->bucket_mb * (1 << 20);
    fmt::print("{}", format_plan(req, args->gpu_mem_gb * 1e9, args->reserve_gb * 1e9));
  });
}

}  // namespace rwkv::cli
