#pragma once
// What `rwkv bench train` times, as a library, so a test can drive the very steps the benchmark
// times and compare them with run_training's (tests/trainer/bench/test_bench_train_step.cpp).
//
// The benchmark's run is the config's first stage on one process: the model built as `rwkv train`
// builds it (trainer/train/trained_model.h) and TrainStep (trainer/train/train_step.h) at stage
// steps 0, 1, 2, …, all grad_accum micro-batches per step, with the config's optimizer section,
// activation checkpointing, ZeRO stage and, on CUDA, precision.
#include <torch/torch.h>

#include "trainer/bench/bench.h"
#include "trainer/config/run_config.h"
#include "trainer/dist/communicator.h"
#include "trainer/train/train_step.h"
#include "trainer/train/trained_model.h"

namespace rwkv::bench {

// The run config of `rwkv bench train`: options.config read as `rwkv train` reads it, with
// train.device set from --device (on the CPU train.precision becomes auto, i.e. fp32, unless --set
// train.precision=bf16 asks for bf16 parameters),
// then the --set overrides, then --micro-batch and --ctx on the first stage. A YAML with only a
// `model:` section gets a run around it: random-token data, micro_batch 8, ctx_len 512, one
// mini-epoch at a constant lr_init of 6e-4, every other field at its default. Throws ConfigError.
trainer::RunConfig bench_train_config(const TrainOptions& options);

class TrainBench {
 public:
  // `device`: as trainer::run_device gives it for `config`.
  TrainBench(const trainer::RunConfig& config, const torch::Device& device);
  TrainBench(const TrainBench&) = delete;
  TrainBench& operator=(const TrainBench&) = delete;

  // The next step of the first stage on `batch` (micro-batches 0 … micro_batches()−1).
  trainer::StepResult step(const trainer::TrainStep::Batch& batch, const trainer::StepHooks& hooks = {});

  const trainer::Stage& stage() const { return stage_; }
  int64_t micro_batches() const { return micro_batches_; }
  trainer::TrainedModel& model() { return model_; }
  double forward_flops_per_token() const { return model_.forward_flops_per_token; }
  torch::ScalarType dtype() const { return step_.dtype(); }

 private:
  Communicator alone_;
  trainer::TrainedModel model_;
  trainer::Stage stage_;
  int64_t micro_batches_;
  trainer::TrainStep step_;
  int64_t stage_step_ = 0;
};

}  // namespace rwkv::bench
