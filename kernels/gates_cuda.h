#pragma once
// The gate and activation CUDA kernels behind raw pointers (no torch headers on the nvcc side): the
// sigmoid gate σ(r)·y and the squared ReLU max(k, 0)², each one pass forward and one pass back
// (kernels/gates_math.h). Launched on the caller's stream; kernels/gates_op_cuda.cpp is the
// torch-side dispatch. The kernels themselves are kernels/gates_kernels.cuh, which
// kernels/gates_host.h also runs on the host.
#include <cuda_runtime_api.h>

#include "kernels/gates_kernel_args.h"

namespace rwkv::kernels::cuda {

// Return the launch status (cudaGetLastError after the launch). n ≥ 1.
cudaError_t gate_forward(const GateCudaForward& args, cudaStream_t stream);
cudaError_t gate_backward(const GateCudaBackward& args, cudaStream_t stream);
cudaError_t relu_square_forward(const ReluSquareCudaForward& args, cudaStream_t stream);
cudaError_t relu_square_backward(const ReluSquareCudaBackward& args, cudaStream_t stream);

}  // namespace rwkv::kernels::cuda
