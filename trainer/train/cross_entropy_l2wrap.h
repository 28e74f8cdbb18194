#pragma once
// The training loss (trainer/README.md "Loss"): the mean cross-entropy of the logits against the
// targets, whose backward also carries L2Wrap, the PaLM auxiliary term of RWKV-4 — one autograd
// function on the fused op of kernels/cross_entropy_op.h, which reads the logits in their own
// dtype (bf16 under autocast) without an fp32 copy and writes their gradient once.
//
// Forward returns the mean cross-entropy over all positions (fp32; fp64 for fp64 logits), L2Wrap
// adding nothing to the value. Backward with incoming gradient g gives the logits
//   g/N · (softmax − one_hot(target)) + g · factor/N · max_logit at each position's arg-max
// (the first index of the maximum, as torch's max(dim)), N the number of positions: the gradient
// of g·(mean cross-entropy + factor·mean(½·max_v logits²)).
//
// Accumulation: the reference adds factor/N·max unscaled by the incoming gradient, so with the loss
// of each micro-batch divided by grad_accum the auxiliary push is grad_accum times stronger than in
// one big batch. Here it is scaled by the incoming gradient: the trainer divides each micro-batch's
// loss by grad_accum, the auxiliary term is divided with it, and the summed gradient equals that of
// one batch of micro_batch·grad_accum samples. With grad_accum = 1 (and an unscaled loss) it is
// exactly the reference's gradient.
#include <torch/torch.h>

namespace rwkv::trainer {

// logits (..., V): fp32 or bf16 (fp64 on the CPU), on the CPU or CUDA; targets: int64 of the
// logits' leading shape, in [0, V). factor: 1e-4 in the recipe, 0 for plain cross-entropy.
torch::Tensor cross_entropy_l2wrap(const torch::Tensor& logits, const torch::Tensor& targets, double factor);

}  // namespace rwkv::trainer
