#pragma once
// The learning rate of one step, a pure function of the step and the schedule (trainer/README.md
// "Optimizer and schedule"):
//   lr_init for the first constant_steps (E_c mini-epochs), then exponential decay
//   lr = lr_init·exp(ln(lr_final/lr_init)·progress), progress = (step − constant)/(steps − constant)
//   clamped to [0, 1], so lr_final is reached at the end of the stage (the last mini-epoch);
//   times the warmup factor 0.2 + 0.8·step/warmup_steps while step < warmup_steps.
// `step` counts optimizer steps within the stage from 0. Parameter groups multiply this base rate
// (trainer/optim/lr_mult.h). The run config builds one schedule per stage
// (trainer/config/run_config.h: a Stage is its schedule plus its batch shape).
#include <cstdint>

namespace rwkv::trainer {

struct LrSchedule {
  double lr_init = 0, lr_final = 0;
  int64_t steps = 0;                // length of the stage in optimizer steps
  int64_t warmup_steps = 0;
  int64_t constant_steps = 0;       // E_c mini-epochs in steps
};

double learning_rate(const LrSchedule& schedule, int64_t step);

}  // namespace rwkv::trainer
