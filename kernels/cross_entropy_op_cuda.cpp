// The torch side of the cross-entropy CUDA kernels: device guard, current stream, pointers.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/cross_entropy_cuda.h"
#include "kernels/cross_entropy_op.h"

namespace rwkv::kernels {

XentResult cross_entropy_forward_cuda(const at::Tensor& logits, const at::Tensor& targets) {
  const XentIo io = xent_kernel_io(logits);
  const c10::cuda::CUDAGuard guard(logits.device());
  XentResult r{at::Tensor(), xent_empty_rows(logits)};
  const XentWorkspace w = xent_workspace(logits);
  C10_CUDA_CHECK(cuda::xent_forward(io, xent_kernel_args(logits, targets, r.rows, w),
                                    c10::cuda::getCurrentCUDAStream()));
  // ATen's reduction over the rows: the same order on every run, and on the device (no host sync).
  r.loss = w.row_loss.sum().div_(static_cast<double>(logits.size(0)));
  return r;
}

at::Tensor cross_entropy_backward_cuda(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                                       const at::Tensor& grad_loss, double factor) {
  const XentIo io = xent_kernel_io(logits);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor grad = at::empty_like(logits);
  C10_CUDA_CHECK(cuda::xent_backward(io, xent_kernel_args(logits, targets, rows, grad_loss, factor, grad),
                                     c10::cuda::getCurrentCUDAStream()));
  return grad;
}

}  // namespace rwkv::kernels
