#pragma once
// Cross-entropy with L2Wrap on the CPU: the row math of kernels/cross_entropy_math.h, rows in
// parallel (at::parallel_for), each row in lanes the compiler vectorizes. Every row's result is
// independent of the thread count, and the loss sums the rows in order, so a run repeats bit for bit.
#include "kernels/cross_entropy_op.h"

namespace rwkv::kernels {

// Arguments validated by cross_entropy_forward / cross_entropy_backward (kernels/cross_entropy_op.h).
XentResult cross_entropy_forward_cpu(const at::Tensor& logits, const at::Tensor& targets);
at::Tensor cross_entropy_backward_cpu(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                                      const at::Tensor& grad_loss, double factor);

}  // namespace rwkv::kernels
