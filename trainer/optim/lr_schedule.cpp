#include "trainer/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace rwkv::trainer {

double learning_rate(const LrSchedule& s, int64_t step) {
  double lr = s.lr_init;
  const int64_t decay_span = s.steps - s.constant_steps;
  if (s.lr_final != s.lr_init && decay_span > 0) {
    const double progress =
        std::clamp(static_cast<double>(step - s.constant_steps) / static_cast<double>(decay_span), 0.0, 1.0);
    lr = s.lr_init * std::exp(std::log(s.lr_final / s.lr_init) * progress);
  }
  if (step < s.warmup_steps) lr *= 0.2 + 0.8 * static_cast<double>(step) / static_cast<double>(s.warmup_steps);
  return lr;
}

}  // namespace rwkv::trainer
