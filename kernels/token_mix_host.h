#pragma once
// The token-shift mix CUDA kernels run on the host: the source the GPU runs
// (kernels/token_mix_kernels.cuh), compiled by g++ through kernels/kernel_shim.h and launched as a
// loop over blocks × threads (kernels/host_cuda.h). Slow; for the tests, which check the kernels'
// indexing, chunking, launch geometry and bf16 I/O against the CPU op. Pointers are host memory;
// arguments and results as kernels/token_mix_cuda.h.
#include "kernels/host_cuda.h"
#include "kernels/token_mix_kernel_args.h"

namespace rwkv::kernels::host {

cudaError_t token_mix_forward(TokenMixIo io, const TokenMixCudaForward& args, cudaStream_t stream);
cudaError_t token_mix_backward(TokenMixIo io, const TokenMixCudaBackward& args, cudaStream_t stream);

}  // namespace rwkv::kernels::host
