#include "trainer/train/metrics_interval.h"

#include <limits>

namespace rwkv::trainer {

MetricsInterval::MetricsInterval(int64_t epoch_samples, double peak_tflops, double forward_flops_per_token,
                                 int world_size)
    : epoch_samples_(epoch_samples),
      peak_tflops_(peak_tflops),
      flops_per_token_(forward_flops_per_token),
      world_size_(world_size) {}

void MetricsInterval::add(const StepResult& step, double tokens) {
  ++steps_;
  tokens_ += tokens;
  if (step.applied) {
    loss_ += step.loss;
    ++applied_;
  }
}

MetricsRow MetricsInterval::close(const TrainProgress& progress, const StepResult& last, int64_t steps_left) {
  const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  const double per_step = seconds / static_cast<double>(steps_);
  step_seconds_avg_ = step_seconds_avg_ == 0 ? per_step : 0.7 * step_seconds_avg_ + 0.3 * per_step;
  MetricsRow row;
  row.step = progress.step;
  row.stage = progress.stage;
  row.mini_epoch = static_cast<double>(progress.stage_samples) / static_cast<double>(epoch_samples_);
  row.loss = applied_ ? loss_ / static_cast<double>(applied_) : std::numeric_limits<double>::quiet_NaN();
  row.lr = last.lr;
  row.grad_norm = last.grad_norm;
  row.tokens_per_s = seconds > 0 ? tokens_ / seconds : 0;
  if (peak_tflops_ > 0) row.mfu = row.tokens_per_s * 3 * flops_per_token_ / (world_size_ * peak_tflops_ * 1e12);
  row.memory_gib = resident_memory_gib();
  row.eta_s = step_seconds_avg_ * static_cast<double>(steps_left);
  row.skipped = progress.skipped_total;
  start_ = Clock::now();
  steps_ = applied_ = 0;
  tokens_ = loss_ = 0;
  return row;
}

}  // namespace rwkv::trainer
