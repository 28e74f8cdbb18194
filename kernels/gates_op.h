#pragma once
// The sigmoid gate σ(r)·y and the squared ReLU max(k, 0)² on tensors (kernels/gates_math.h): the
// argument bundles that the CPU and CUDA implementations share, and the entry points that validate
// them and run on the tensors' device. rwkv/gates.cpp builds the autograd ops on top of these.
#include <ATen/core/Tensor.h>

#include "kernels/gates_kernel_args.h"

namespace rwkv::kernels {

// r, y, out, gout, gr, gy: one shape, contiguous, on one device. r and y each fp32 or bf16 (both
// fp64 on the CPU, for finite-difference checks); out and gout in gate_out_dtype(r, y); gr in r's
// dtype, gy in y's.
struct GateForwardArgs {
  at::Tensor r, y;
  at::Tensor out;  // output
};

struct GateBackwardArgs {
  at::Tensor r, y, gout;
  at::Tensor gr, gy;  // outputs
};

// k, out, gout, gk: one shape and dtype (fp32 or bf16; fp64 on the CPU), contiguous, one device.
struct ReluSquareForwardArgs {
  at::Tensor k;
  at::Tensor out;  // output
};

struct ReluSquareBackwardArgs {
  at::Tensor k, gout;
  at::Tensor gk;  // output
};

// The dtype of σ(r)·y: torch's promotion of r and y (bf16 only when both are).
at::ScalarType gate_out_dtype(at::ScalarType r, at::ScalarType y);

// Validate (a clear message naming the argument otherwise) and run. Empty tensors do nothing.
void gate_forward(const GateForwardArgs& args);
void gate_backward(const GateBackwardArgs& args);
void relu_square_forward(const ReluSquareForwardArgs& args);
void relu_square_backward(const ReluSquareBackwardArgs& args);

// The raw-pointer arguments of the CUDA kernels for validated, non-empty tensors: what
// kernels/gates_op_cuda.cpp launches on the GPU and the host-run kernel tests on the CPU.
GateCudaForward gate_kernel_args(const GateForwardArgs& args);
GateCudaBackward gate_kernel_args(const GateBackwardArgs& args);
ReluSquareCudaForward relu_square_kernel_args(const ReluSquareForwardArgs& args);
ReluSquareCudaBackward relu_square_kernel_args(const ReluSquareBackwardArgs& args);

// The CUDA side (kernels/gates_op_cuda.cpp; a build without CUDA throws).
void gate_forward_cuda(const GateForwardArgs& args);
void gate_backward_cuda(const GateBackwardArgs& args);
void relu_square_forward_cuda(const ReluSquareForwardArgs& args);
void relu_square_backward_cuda(const ReluSquareBackwardArgs& args);

}  // namespace rwkv::kernels
