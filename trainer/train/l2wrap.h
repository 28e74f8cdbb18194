#pragma once
// L2Wrap, the PaLM auxiliary term of RWKV-4 (trainer/README.md "Loss"), as its own autograd function.
//
// Forward returns `loss` unchanged. Backward passes the loss gradient through and gives `logits`
// (B, T, V) the gradient grad_loss · factor/(B·T) · max_logit at each position's arg-max vocab
// index (zero elsewhere): the gradient of grad_loss · factor · mean_{b,t}(½·max_v logits²).
//
// Accumulation: the reference adds factor/(B·T)·max unscaled by the incoming gradient, so with
// the loss of each micro-batch divided by grad_accum the auxiliary push is grad_accum times
// stronger than in one big batch. Here it is scaled by the incoming gradient: the trainer divides
// each micro-batch's loss by grad_accum, the auxiliary term is divided with it, and the summed
// gradient equals that of one batch of micro_batch·grad_accum samples. With grad_accum = 1 (and
// an unscaled loss) it is exactly the reference's gradient.
#include <torch/torch.h>

namespace rwkv::trainer {

// loss: a scalar computed from logits; factor: 1e-4 in the recipe.
torch::Tensor l2wrap(const torch::Tensor& loss, const torch::Tensor& logits, double factor);

}  // namespace rwkv::trainer
