#pragma once
// Cross-entropy with L2Wrap fused over rows of logits (kernels/README.md "Cross-entropy and
// L2Wrap"): the entry points that validate their tensors and run on their device, the CPU op
// (kernels/cross_entropy_cpu.h) or the CUDA kernels (kernels/cross_entropy_cuda.h). Everything is
// computed in the accumulation type from the logits as they are (bf16 included) without an fp32
// copy of them, and the backward writes the logits' gradient once, L2Wrap's term included.
// trainer/train/cross_entropy_l2wrap.h builds the autograd function on top of these; the math is
// kernels/cross_entropy_math.h.
#include <ATen/core/Tensor.h>

#include "kernels/cross_entropy_kernel_args.h"

namespace rwkv::kernels {

// What the forward keeps for the backward, one entry per row: the log-sum-exp and the largest
// logit in the accumulation dtype (fp64 for fp64 logits, fp32 otherwise) and the first index of
// the largest logit (int64; a NaN counts as largest, kernels/cross_entropy_math.h).
struct XentRows {
  at::Tensor lse, max, argmax;
};

struct XentResult {
  at::Tensor loss;  // scalar, accumulation dtype: the mean over rows of lse − x_target
  XentRows rows;
};

// logits (N, V) contiguous, fp32 or bf16 (fp64 on the CPU); targets (N) int64, same device.
// A target outside [0, V) throws on the CPU; on CUDA it makes the loss NaN (checking would need a
// host sync), which the training step's non-finite guard refuses.
XentResult cross_entropy_forward(const at::Tensor& logits, const at::Tensor& targets);

// ∂/∂logits of grad_loss·(loss + factor·mean_rows ½·max²) (L2Wrap, trainer/README.md "Loss"):
// (N, V) in the logits' dtype. grad_loss: one element, accumulation dtype, on the logits' device
// (read there: no host sync). `rows` as the forward returned it for these logits and targets.
at::Tensor cross_entropy_backward(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                                  const at::Tensor& grad_loss, double factor);

// The accumulation dtype of logits of `dtype`.
at::ScalarType xent_acc_dtype(at::ScalarType dtype);

// The CUDA kernels' pointers for validated tensors (kernels/cross_entropy_kernel_args.h): what
// kernels/cross_entropy_op_cuda.cpp launches on the GPU and the host-run kernel tests on the CPU.
struct XentWorkspace {
  at::Tensor slice_max, slice_sum, slice_index;  // (N, kXentSlices)
  at::Tensor row_loss;                           // (N)
};
XentIo xent_kernel_io(const at::Tensor& logits);
// New uninitialised rows and workspace for (N, V) logits, on their device.
XentRows xent_empty_rows(const at::Tensor& logits);
XentWorkspace xent_workspace(const at::Tensor& logits);
XentForward xent_kernel_args(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                             const XentWorkspace& workspace);
XentBackward xent_kernel_args(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                              const at::Tensor& grad_loss, double factor, const at::Tensor& grad_logits);

// The CUDA side (kernels/cross_entropy_op_cuda.cpp; a build without CUDA throws), for validated
// tensors.
XentResult cross_entropy_forward_cuda(const at::Tensor& logits, const at::Tensor& targets);
at::Tensor cross_entropy_backward_cuda(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                                       const at::Tensor& grad_loss, double factor);

}  // namespace rwkv::kernels
