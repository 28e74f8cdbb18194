#pragma once
// Adam's per-element update on the CPU in one pass over memory (trainer/optim/optimizer.h has the
// formula and the reasons for our own Adam). ATen's formulation makes seven passes and three
// temporaries per tensor; on a 169M model that was the largest part of a CPU step's optimizer
// phase (`rwkv bench train`). Threaded over the elements; fp32 throughout.
#include <cstdint>

namespace rwkv::kernels {

struct AdamScalars {
  float beta1, beta2, eps;
  float step_size;     // lr / (1 − β1^t)
  float inv_sqrt_bc2;  // 1 / √(1 − β2^t)
  float keep;          // 1 − lr·wd (decoupled weight decay), 1 without
  // The clip coefficient (trainer/optim/optimizer.h clip_coefficient), 1 without clipping: applied
  // here instead of a separate pass that reads and writes every gradient before the update.
  float grad_scale = 1.0f;
};

// g ← grad·grad_scale (fp32, as ATen's in-place scaling by the coefficient rounds it);
// m ← m + (1−β1)(g − m)  (torch's lerp form);  v ← β2·v + (1−β2)·g²;
// p ← p·keep − step_size · m / (√v · inv_sqrt_bc2 + eps).  Arrays of n elements, not aliased;
// `grad` is only read.
void adam_update_cpu(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                     const AdamScalars& s);

}  // namespace rwkv::kernels
