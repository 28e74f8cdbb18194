#pragma once
// The cross-entropy + L2Wrap CUDA kernels behind raw pointers (no torch headers on the nvcc side),
// launched on the caller's stream; kernels/cross_entropy_op_cuda.cpp is the torch-side dispatch.
// The kernels themselves are kernels/cross_entropy_kernels.cuh, which kernels/cross_entropy_host.h
// also runs on the host for the tests.
#include <cuda_runtime_api.h>

#include "kernels/cross_entropy_kernel_args.h"

namespace rwkv::kernels::cuda {

// Per row: lse, max, arg-max and loss (kernels/cross_entropy_kernel_args.h). Returns the launch
// status (cudaGetLastError after the launches).
cudaError_t xent_forward(XentIo io, const XentForward& args, cudaStream_t stream);
// The logits' gradient, written once.
cudaError_t xent_backward(XentIo io, const XentBackward& args, cudaStream_t stream);

}  // namespace rwkv::kernels::cuda
