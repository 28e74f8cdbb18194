#pragma once
// The model a run trains, built one way for `rwkv train`, `rwkv bench train` and the tests: the
// RWKV of config.model in its compute dtype (trainer/train/train_step.h compute_dtype: bf16
// parameters whose fp32 masters the optimizer keeps, or fp32) on the run's device, initialised as
// rwkv/README.md "Initialisation" says (rwkv/init.h, seed train.seed, embedding scale
// optimizer.lr_init), and its training forward, which recomputes each block in backward when
// train.activation_checkpointing is on (rwkv/block_recompute.h).
#include <torch/torch.h>

#include <functional>

#include "rwkv/model.h"
#include "trainer/config/run_config.h"
#include "trainer/train/segments.h"

namespace rwkv::trainer {

struct TrainedModel {
  RWKV model{nullptr};
  // tokens (B, T) int64 → logits (B, T, V), fresh or from an RNN state, as the training step
  // calls it (trainer/train/segments.h).
  StepForward forward;
  // 2(13LD² + VD) (rwkv/README.md "Shapes"); a trained token costs 3× (trainer/README.md "Throughput").
  double forward_flops_per_token = 0;
};

TrainedModel build_trained_model(const RunConfig& config, const torch::Device& device);

}  // namespace rwkv::trainer
