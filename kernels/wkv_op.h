#pragma once
// WKV on tensors: the argument bundles that the CPU and CUDA implementations share, and the
// entry points that validate them and run on the tensors' device. rwkv/wkv.cpp builds the
// autograd op on top of these; the math itself is kernels/wkv_math.h.
#include <ATen/core/Tensor.h>

#include "kernels/wkv_kernel_args.h"
#include "kernels/wkv_schedule.h"

namespace rwkv::kernels {

// Shapes: k, v, y, gy, gk, gv are (B, T, C), contiguous, one I/O dtype (fp32 or bf16; fp64 on
// the CPU, for finite-difference checks). time_decay, time_first and their gradients are (C), in
// one parameter dtype of their own (fp32 or bf16; fp64 too on the CPU): the op reads them as
// stored and computes w = −exp(time_decay) itself (kernels/wkv_math.h decay), so the caller
// launches no cast, exp or neg. The state tensors are (B, C) in the accumulation dtype
// wkv_acc_dtype(I/O dtype).
struct WkvForwardArgs {
  at::Tensor time_decay, time_first, k, v;
  at::Tensor aa0, bb0, pp0;  // the state before token 0; all undefined: the empty state (a fresh sequence)
  at::Tensor aa, bb, pp;     // out: the state after token T-1
  at::Tensor y;              // out
};

struct WkvBackwardArgs {
  at::Tensor time_decay, time_first, k, v;
  at::Tensor aa0, bb0, pp0;   // the state the forward started from (all undefined: the empty state)
  at::Tensor gy;              // ∂L/∂y
  at::Tensor g_aa_T, g_bb_T;  // ∂L/∂ of the final aa, bb; both undefined: the final state is unused
  // Outputs.
  at::Tensor gk, gv;
  at::Tensor g_decay, g_first;     // (C), parameter dtype: ∂L/∂time_decay, ∂L/∂time_first
  at::Tensor g_aa0, g_bb0, g_pp0;  // gradient of the initial state; defined exactly when aa0 is
};

// fp64 for fp64 I/O, fp32 otherwise (kernels/README.md "WKV": the state stays fp32 for bf16 I/O).
at::ScalarType wkv_acc_dtype(at::ScalarType io_dtype);

// Validate (shapes, dtypes, contiguity, one device; a clear message otherwise) and run.
void wkv_forward(const WkvForwardArgs& args);
void wkv_backward(const WkvBackwardArgs& args);

// The backward's scratch in the accumulation dtype: the state before every step (3·B·T·C) and
// the per-batch-row sums of ∂L/∂w and ∂L/∂u (2·B·C), flat.
at::Tensor wkv_backward_workspace(const at::Tensor& k);

// The raw-pointer arguments of the CUDA kernels (kernels/wkv_kernel_args.h) for validated
// tensors: what kernels/wkv_op_cuda.cpp launches on the GPU, and the host-run kernel tests on the
// CPU. `workspace` from wkv_backward_workspace. The kernels' I/O type comes from k's dtype, their
// parameter type from time_decay's (fp32 or bf16 each).
WkvIo wkv_kernel_io(const at::Tensor& t);
WkvCudaForward wkv_kernel_args(const WkvForwardArgs& args);
WkvCudaBackward wkv_kernel_args(const WkvBackwardArgs& args, const at::Tensor& workspace);

// The CUDA side (kernels/wkv_op_cuda.cpp; a build without CUDA throws).
void wkv_forward_cuda(const WkvForwardArgs& args);
void wkv_backward_cuda(const WkvBackwardArgs& args, const at::Tensor& workspace);
// The figures kernels/wkv_schedule.h decides by on CUDA device `device` (queried once per device).
WkvGpu wkv_gpu_figures_cuda(int device);
// Tokens per chunk the CUDA op runs for a CUDA k of shape (B, T, C), 0 for the sequential kernels:
// RWKV_WKV_CHUNK when set to a number, else kernels/wkv_schedule.h's policy on k's device.
int64_t wkv_chunk_cuda(const at::Tensor& k);

}  // namespace rwkv::kernels
