#pragma once
// The unfused gradient clipping the optimizers fold into their update (trainer/optim/optimizer.h
// grad_scale): every gradient scaled in place by clip_coefficient, then the plain update. The tests
// compare the folded update with this.
#include <torch/torch.h>

#include <vector>

#include "trainer/optim/optimizer.h"

namespace rwkv::test {

inline void clip_gradients(const std::vector<torch::Tensor>& grads, double norm, double max_norm) {
  const double coef = rwkv::trainer::clip_coefficient(norm, max_norm);
  if (coef == 1.0) return;
  torch::NoGradGuard no_grad;
  for (const auto& g : grads) g.mul_(coef);
}

}  // namespace rwkv::test
