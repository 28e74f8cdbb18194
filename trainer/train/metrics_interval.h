#pragma once
// The steps between two metrics lines (trainer/train/metrics.h): their count, tokens, wall time
// and the mean loss of the applied ones, turned into one MetricsRow when the interval closes.
// The ETA follows a moving average of the seconds per step over the intervals.
#include <chrono>
#include <cstdint>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/train/metrics.h"
#include "trainer/train/train_step.h"

namespace rwkv::trainer {

class MetricsInterval {
 public:
  // MFU needs `peak_tflops` > 0 (per rank) and the model's forward FLOPs per token; a trained
  // token costs 3× those (trainer/README.md "Throughput").
  MetricsInterval(int64_t epoch_samples, double peak_tflops, double forward_flops_per_token, int world_size);

  // One step of `tokens` tokens (all ranks together).
  void add(const StepResult& step, double tokens);
  // The row of the steps added since the last close, ending at `progress` whose last step was
  // `last`; `steps_left` to the end of the run give the ETA. Starts the next interval.
  MetricsRow close(const TrainProgress& progress, const StepResult& last, int64_t steps_left);
  // Time spent between steps on other work (validation) is left out of the throughput and ETA.
  void exclude(std::chrono::steady_clock::duration elapsed) { start_ += elapsed; }

 private:
  using Clock = std::chrono::steady_clock;
  int64_t epoch_samples_;
  double peak_tflops_, flops_per_token_;
  int world_size_;
  Clock::time_point start_ = Clock::now();
  int64_t steps_ = 0, applied_ = 0;
  double tokens_ = 0, loss_ = 0, step_seconds_avg_ = 0;
};

}  // namespace rwkv::trainer
