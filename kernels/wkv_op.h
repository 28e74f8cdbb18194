#pragma once
// WKV on tensors: the argument bundles that the CPU and CUDA implementations share, and the
// entry points that validate them and run on the tensors' device. rwkv/wkv.cpp builds the
// autograd op on top of these; the math itself is kernels/wkv_math.h.
#include <ATen/core/Tensor.h>

#include "kernels/wkv_kernel_args.h"

namespace rwkv::kernels {

// Shapes: k, v, y, gy, gk, gv are (B, T, C), contiguous, one I/O dtype (fp32 or bf16; fp64 on
// the CPU, for finite-difference checks). w, u are (C); the state tensors are (B, C). w, u, the
// state and the per-batch partials gw, gu use the accumulation dtype wkv_acc_dtype(I/O dtype).
struct WkvForwardArgs {
  at::Tensor w, u, k, v;
  at::Tensor aa, bb, pp;  // in: the state before token 0; overwritten with the state after token T-1
  at::Tensor y;           // out
};

struct WkvBackwardArgs {
  at::Tensor w, u, k, v;
  at::Tensor aa0, bb0, pp0;  // the state the forward started from
  at::Tensor gy;             // ∂L/∂y
  at::Tensor g_aa_T, g_bb_T; // ∂L/∂ of the final aa, bb (zeros when the final state is unused)
  // Outputs.
  at::Tensor gk, gv;
  at::Tensor gw, gu;              // (B, C): ∂L/∂w and ∂L/∂u per batch row, summed over t
  at::Tensor g_aa0, g_bb0, g_pp0; // gradient of the initial state
};

// fp64 for fp64 I/O, fp32 otherwise (kernels/README.md "WKV": the state stays fp32 for bf16 I/O).
at::ScalarType wkv_acc_dtype(at::ScalarType io_dtype);

// Validate (shapes, dtypes, contiguity, one device; a clear message otherwise) and run.
void wkv_forward(const WkvForwardArgs& args);
void wkv_backward(const WkvBackwardArgs& args);

// The raw-pointer arguments of the CUDA kernels (kernels/wkv_kernel_args.h) for validated
// tensors: what kernels/wkv_op_cuda.cpp launches on the GPU, and the host-run kernel tests on the
// CPU. `workspace` as below. The kernels' I/O type comes from k's dtype (fp32 or bf16).
WkvIo wkv_kernel_io(const at::Tensor& k);
WkvCudaForward wkv_kernel_args(const WkvForwardArgs& args);
WkvCudaBackward wkv_kernel_args(const WkvBackwardArgs& args, const at::Tensor& workspace);

// The CUDA side (kernels/wkv_op_cuda.cpp; a build without CUDA throws). `workspace` is
// (3, B, T, C) fp32: the backward's forward pass stores the state before every step there.
void wkv_forward_cuda(const WkvForwardArgs& args);
void wkv_backward_cuda(const WkvBackwardArgs& args, const at::Tensor& workspace);

}  // namespace rwkv::kernels
