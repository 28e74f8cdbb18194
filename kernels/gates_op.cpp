#include "kernels/gates_op.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include "kernels/gates_cpu.h"

namespace rwkv::kernels {
namespace {

void check_tensor(const at::Tensor& t, const char* op, const char* name, at::ScalarType dtype, at::IntArrayRef shape,
                  const at::Device& device) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is missing");
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " has shape ", t.sizes(), ", expected ", shape);
  TORCH_CHECK(t.device() == device, op, ": ", name, " is on ", t.device(), ", expected ", device);
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// The device and element count of a kernel's first input, after checking what every kernel needs.
void check_first(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is missing");
  TORCH_CHECK(t.is_cpu() || t.is_cuda(), op, ": unsupported device ", t.device());
  const auto dt = t.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || (dt == at::kDouble && t.is_cpu()), op, ": ", name,
              " dtype must be float32 or bfloat16 (float64 on the CPU), got ", dt);
  TORCH_CHECK(t.numel() <= kGateThreads * kGateMaxBlocks, op, ": ", t.numel(), " elements, more than one launch takes (",
              kGateThreads * kGateMaxBlocks, ")");
}

void check_gate_inputs(const at::Tensor& r, const at::Tensor& y) {
  check_first(r, "sigmoid gate", "r");
  check_first(y, "sigmoid gate", "y");
  TORCH_CHECK((r.scalar_type() == at::kDouble) == (y.scalar_type() == at::kDouble),
              "sigmoid gate: r (", r.scalar_type(), ") and y (", y.scalar_type(), ") must both be float64 or neither");
  check_tensor(r, "sigmoid gate", "r", r.scalar_type(), r.sizes(), r.device());
  check_tensor(y, "sigmoid gate", "y", y.scalar_type(), r.sizes(), r.device());
}

GateType gate_type(const at::Tensor& t) { return t.scalar_type() == at::kBFloat16 ? GateType::bf16 : GateType::f32; }

}  // namespace

// c10's table, not at::promote_types: that one is a dispatched operator, which the kernel census
// would count as a launch.
at::ScalarType gate_out_dtype(at::ScalarType r, at::ScalarType y) { return c10::promoteTypes(r, y); }

namespace {

// Runs a validated op on its tensors' device, announced to the kernel census
// (trainer/bench/op_census.h) with every tensor it reads or writes. Empty tensors: nothing to do.
template <class Args>
void run(const char* name, const at::Tensor& first, const std::vector<c10::IValue>& tensors, const Args& a,
         void (*on_cuda)(const Args&), void (*on_cpu)(const Args&)) {
  if (first.numel() == 0) return;
  RECORD_FUNCTION(name, tensors);
  (first.is_cuda() ? on_cuda : on_cpu)(a);
}

}  // namespace

void gate_forward(const GateForwardArgs& a) {
  check_gate_inputs(a.r, a.y);
  check_tensor(a.out, "sigmoid gate", "out", gate_out_dtype(a.r.scalar_type(), a.y.scalar_type()), a.r.sizes(),
               a.r.device());
  run("rwkv::gate_forward", a.r, {a.r, a.y, a.out}, a, gate_forward_cuda, gate_forward_cpu);
}

void gate_backward(const GateBackwardArgs& a) {
  check_gate_inputs(a.r, a.y);
  check_tensor(a.gout, "sigmoid gate", "gout", gate_out_dtype(a.r.scalar_type(), a.y.scalar_type()), a.r.sizes(),
               a.r.device());
  check_tensor(a.gr, "sigmoid gate", "gr", a.r.scalar_type(), a.r.sizes(), a.r.device());
  check_tensor(a.gy, "sigmoid gate", "gy", a.y.scalar_type(), a.r.sizes(), a.r.device());
  run("rwkv::gate_backward", a.r, {a.r, a.y, a.gout, a.gr, a.gy}, a, gate_backward_cuda, gate_backward_cpu);
}

void relu_square_forward(const ReluSquareForwardArgs& a) {
  check_first(a.k, "relu square", "k");
  check_tensor(a.k, "relu square", "k", a.k.scalar_type(), a.k.sizes(), a.k.device());
  check_tensor(a.out, "relu square", "out", a.k.scalar_type(), a.k.sizes(), a.k.device());
  run("rwkv::relu_square_forward", a.k, {a.k, a.out}, a, relu_square_forward_cuda, relu_square_forward_cpu);
}

void relu_square_backward(const ReluSquareBackwardArgs& a) {
  check_first(a.k, "relu square", "k");
  check_tensor(a.k, "relu square", "k", a.k.scalar_type(), a.k.sizes(), a.k.device());
  check_tensor(a.gout, "relu square", "gout", a.k.scalar_type(), a.k.sizes(), a.k.device());
  check_tensor(a.gk, "relu square", "gk", a.k.scalar_type(), a.k.sizes(), a.k.device());
  run("rwkv::relu_square_backward", a.k, {a.k, a.gout, a.gk}, a, relu_square_backward_cuda, relu_square_backward_cpu);
}

GateCudaForward gate_kernel_args(const GateForwardArgs& a) {
  return GateCudaForward{a.r.numel(), gate_type(a.r), gate_type(a.y), a.r.data_ptr(), a.y.data_ptr(), a.out.data_ptr()};
}

GateCudaBackward gate_kernel_args(const GateBackwardArgs& a) {
  return GateCudaBackward{a.r.numel(),     gate_type(a.r),   gate_type(a.y), a.r.data_ptr(),
                          a.y.data_ptr(),  a.gout.data_ptr(), a.gr.data_ptr(), a.gy.data_ptr()};
}

ReluSquareCudaForward relu_square_kernel_args(const ReluSquareForwardArgs& a) {
  return ReluSquareCudaForward{a.k.numel(), gate_type(a.k), a.k.data_ptr(), a.out.data_ptr()};
}

ReluSquareCudaBackward relu_square_kernel_args(const ReluSquareBackwardArgs& a) {
  return ReluSquareCudaBackward{a.k.numel(), gate_type(a.k), a.k.data_ptr(), a.gout.data_ptr(), a.gk.data_ptr()};
}

}  // namespace rwkv::kernels
