#pragma once
// The cross-entropy CUDA kernels run on the host: the source the GPU runs
// (kernels/cross_entropy_kernels.cuh), compiled by g++ through kernels/kernel_shim.h and launched
// as a loop over blocks × threads (kernels/host_cuda.h). For the tests, which check the kernels'
// indexing, launch geometry and bf16 I/O on machines without a GPU. The pointers are host memory;
// arguments and results as kernels/cross_entropy_cuda.h. e^x is host_expf (kernels/wkv_math.h)
// instead of the device's expf (a few ulps).
#include "kernels/cross_entropy_kernel_args.h"
#include "kernels/host_cuda.h"

namespace rwkv::kernels::host {

cudaError_t xent_forward(XentIo io, const XentForward& args, cudaStream_t stream);
cudaError_t xent_backward(XentIo io, const XentBackward& args, cudaStream_t stream);

}  // namespace rwkv::kernels::host
