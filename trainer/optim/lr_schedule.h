#pragma once
// The learning rate of one step, a pure function of the step and the stage (trainer/README.md "Optimizer and schedule"):
//   lr_init for the first constant_steps (E_c mini-epochs), then exponential decay
//   lr = lr_init·exp(ln(lr_final/lr_init)·progress), progress = (step − constant)/(steps − constant)
//   clamped to [0, 1], so lr_final is reached at the end of the stage (the last mini-epoch);
//   times the warmup factor 0.2 + 0.8·step/warmup_steps while step < warmup_steps.
// `step` counts optimizer steps within the stage from 0. Parameter groups multiply this base rate
// (lr_mult, trainer/optim/optimizer.h).
#include <cstdint>

#include "trainer/config/run_config.h"

namespace rwkv::trainer {

double learning_rate(const Stage& stage, int64_t step);

}  // namespace rwkv::trainer
