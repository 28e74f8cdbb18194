#pragma once
// The gate and activation CUDA kernels run on the host: the source the GPU runs
// (kernels/gates_kernels.cuh), compiled by g++ through kernels/kernel_shim.h and launched as a loop
// over blocks × threads (kernels/host_cuda.h). Slow; for the tests, which check the kernels'
// indexing, bounds, type dispatch and bf16 I/O against the CPU op. Pointers are host memory;
// arguments and results as kernels/gates_cuda.h.
#include "kernels/gates_kernel_args.h"
#include "kernels/host_cuda.h"

namespace rwkv::kernels::host {

cudaError_t gate_forward(const GateCudaForward& args, cudaStream_t stream);
cudaError_t gate_backward(const GateCudaBackward& args, cudaStream_t stream);
cudaError_t relu_square_forward(const ReluSquareCudaForward& args, cudaStream_t stream);
cudaError_t relu_square_backward(const ReluSquareCudaBackward& args, cudaStream_t stream);

}  // namespace rwkv::kernels::host
