#pragma once
// `rwkv bench loss`: the training loss (trainer/train/cross_entropy_l2wrap.h, one fused op) against
// the formulation it replaced — torch's cross_entropy on an fp32 copy of the logits plus L2Wrap as
// a separate autograd function scattering its term into a zeroed logits-sized gradient — forward
// and backward on the same logits in the same run: time, peak tensor memory (CPU) and agreement.
// The replaced formulation is kept here as the benchmark's peer and the tests' reference
// (tests/trainer/train/test_cross_entropy_l2wrap.cpp).
#include <torch/torch.h>

#include <string>

namespace rwkv::bench {

// The mean cross-entropy of logits (..., V) against targets, computed on an fp32 copy (fp64 logits
// stay fp64), with L2Wrap at `factor` (0: none) in its backward: grad_loss·factor/positions·max
// at torch's max(-1) index, in the logits' dtype, added to the cross-entropy's gradient.
torch::Tensor unfused_cross_entropy_l2wrap(const torch::Tensor& logits, const torch::Tensor& targets, double factor);

struct LossOptions {
  int64_t rows = 256, vocab = 50277;  // rows: B·T token positions of a micro-batch
  double factor = 1e-4;
  int runs = 5, warmup = 1;
  std::string device = "cpu", dtype = "fp32", json;
};
void bench_loss(const LossOptions& o);

}  // namespace rwkv::bench
