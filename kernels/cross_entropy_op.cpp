#include "kernels/cross_entropy_op.h"

#include <ATen/ATen.h>

#include "kernels/cross_entropy_cpu.h"

namespace rwkv::kernels {
namespace {

// Checks logits and targets; returns (N, V).
std::array<int64_t, 2> check_inputs(const at::Tensor& logits, const at::Tensor& targets) {
  TORCH_CHECK(logits.defined() && logits.dim() == 2, "cross_entropy: logits must be (rows, vocab), got ",
              logits.defined() ? logits.sizes() : at::IntArrayRef{});
  const auto dtype = logits.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || (dtype == at::kDouble && logits.is_cpu()),
              "cross_entropy: logits must be float32 or bfloat16 (float64 on the CPU), got ", dtype);
  TORCH_CHECK(logits.is_cpu() || logits.is_cuda(), "cross_entropy: unsupported device ", logits.device());
  TORCH_CHECK(logits.is_contiguous(), "cross_entropy: logits must be contiguous");
  const int64_t N = logits.size(0), V = logits.size(1);
  TORCH_CHECK(N > 0 && V > 0, "cross_entropy: empty logits of shape ", logits.sizes());
  TORCH_CHECK(targets.defined() && targets.sizes() == at::IntArrayRef{N}, "cross_entropy: targets must be (", N,
              "), got ", targets.defined() ? targets.sizes() : at::IntArrayRef{});
  TORCH_CHECK(targets.scalar_type() == at::kLong, "cross_entropy: targets must be int64, got ", targets.scalar_type());
  TORCH_CHECK(targets.device() == logits.device(), "cross_entropy: targets are on ", targets.device(),
              ", the logits on ", logits.device());
  TORCH_CHECK(targets.is_contiguous(), "cross_entropy: targets must be contiguous");
  return {N, V};
}

void check_rows(const XentRows& rows, const at::Tensor& logits, int64_t N) {
  const auto acc = xent_acc_dtype(logits.scalar_type());
  for (const auto& [t, name, dtype] : {std::tuple{rows.lse, "lse", acc}, std::tuple{rows.max, "max", acc},
                                       std::tuple{rows.argmax, "argmax", at::kLong}}) {
    TORCH_CHECK(t.defined() && t.sizes() == at::IntArrayRef{N} && t.scalar_type() == dtype &&
                    t.device() == logits.device() && t.is_contiguous(),
                "cross_entropy: the forward's ", name, " must be (", N, ") ", dtype, " on ", logits.device());
  }
}

}  // namespace

at::ScalarType xent_acc_dtype(at::ScalarType dtype) { return dtype == at::kDouble ? at::kDouble : at::kFloat; }

XentResult cross_entropy_forward(const at::Tensor& logits, const at::Tensor& targets) {
  check_inputs(logits, targets);
  return logits.is_cuda() ? cross_entropy_forward_cuda(logits, targets) : cross_entropy_forward_cpu(logits, targets);
}

at::Tensor cross_entropy_backward(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                                  const at::Tensor& grad_loss, double factor) {
  const auto [N, V] = check_inputs(logits, targets);
  check_rows(rows, logits, N);
  const auto acc = xent_acc_dtype(logits.scalar_type());
  TORCH_CHECK(grad_loss.defined() && grad_loss.numel() == 1 && grad_loss.scalar_type() == acc &&
                  grad_loss.device() == logits.device(),
              "cross_entropy: the loss gradient must be one ", acc, " number on ", logits.device());
  TORCH_CHECK(factor >= 0, "cross_entropy: the L2Wrap factor must be non-negative, got ", factor);
  return logits.is_cuda() ? cross_entropy_backward_cuda(logits, targets, rows, grad_loss, factor)
                          : cross_entropy_backward_cpu(logits, targets, rows, grad_loss, factor);
}

XentIo xent_kernel_io(const at::Tensor& logits) {
  TORCH_CHECK(logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16,
              "cross_entropy kernels: logits must be float32 or bfloat16, got ", logits.scalar_type());
  return logits.scalar_type() == at::kBFloat16 ? XentIo::bf16 : XentIo::f32;
}

XentRows xent_empty_rows(const at::Tensor& logits) {
  const int64_t N = logits.size(0);
  const auto acc = logits.options().dtype(xent_acc_dtype(logits.scalar_type()));
  return XentRows{at::empty({N}, acc), at::empty({N}, acc), at::empty({N}, logits.options().dtype(at::kLong))};
}

XentWorkspace xent_workspace(const at::Tensor& logits) {
  const int64_t N = logits.size(0);
  const auto f32 = logits.options().dtype(at::kFloat);
  return XentWorkspace{at::empty({N, kXentSlices}, f32), at::empty({N, kXentSlices}, f32),
                       at::empty({N, kXentSlices}, logits.options().dtype(at::kLong)), at::empty({N}, f32)};
}

XentForward xent_kernel_args(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                             const XentWorkspace& w) {
  return XentForward{logits.size(0),
                     logits.size(1),
                     logits.const_data_ptr(),
                     targets.const_data_ptr<int64_t>(),
                     w.slice_max.data_ptr<float>(),
                     w.slice_sum.data_ptr<float>(),
                     w.slice_index.data_ptr<int64_t>(),
                     rows.lse.data_ptr<float>(),
                     rows.max.data_ptr<float>(),
                     rows.argmax.data_ptr<int64_t>(),
                     w.row_loss.data_ptr<float>()};
}

XentBackward xent_kernel_args(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                              const at::Tensor& grad_loss, double factor, const at::Tensor& grad_logits) {
  return XentBackward{logits.size(0),
                      logits.size(1),
                      logits.const_data_ptr(),
                      targets.const_data_ptr<int64_t>(),
                      rows.lse.const_data_ptr<float>(),
                      rows.max.const_data_ptr<float>(),
                      rows.argmax.const_data_ptr<int64_t>(),
                      grad_loss.const_data_ptr<float>(),
                      static_cast<float>(factor),
                      grad_logits.data_ptr()};
}

}  // namespace rwkv::kernels
