#pragma once
// The token-shift mix CUDA kernels behind raw pointers (no torch headers on the nvcc side): one
// pass over x writing every mix x·μ_j + xx·(1 − μ_j), and one pass over the mixes' gradients
// writing ∂L/∂x, ∂L/∂prev and per-(b, chunk) rows of ∂L/∂μ_j (kernels/token_mix_math.h). Launched
// on the caller's stream; kernels/token_mix_op_cuda.cpp is the torch-side dispatch. The kernels
// themselves are kernels/token_mix_kernels.cuh, which kernels/token_mix_host.h also runs on the host.
#include <cuda_runtime_api.h>

#include "kernels/token_mix_kernel_args.h"

namespace rwkv::kernels::cuda {

// Return the launch status (cudaGetLastError after the launch). args.mixes is 1 … kMaxMixes.
cudaError_t token_mix_forward(TokenMixIo io, const TokenMixCudaForward& args, cudaStream_t stream);
cudaError_t token_mix_backward(TokenMixIo io, const TokenMixCudaBackward& args, cudaStream_t stream);

}  // namespace rwkv::kernels::cuda
