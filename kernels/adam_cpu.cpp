#include "kernels/adam_cpu.h"

#include <ATen/Parallel.h>

#include <cmath>

namespace rwkv::kernels {

void adam_update_cpu(float* __restrict param, const float* __restrict grad, float* __restrict exp_avg,
                     float* __restrict exp_avg_sq, int64_t n, const AdamScalars& s) {
  const AdamScalars c = s;  // by value: the compiler need not reload it through a pointer
  at::parallel_for(0, n, 1 << 15, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = grad[i] * c.grad_scale;
      const float m = exp_avg[i] + (1.0f - c.beta1) * (g - exp_avg[i]);
      const float v = c.beta2 * exp_avg_sq[i] + (1.0f - c.beta2) * g * g;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      param[i] = param[i] * c.keep - c.step_size * m / (std::sqrt(v) * c.inv_sqrt_bc2 + c.eps);
    }
  });
}

}  // namespace rwkv::kernels
