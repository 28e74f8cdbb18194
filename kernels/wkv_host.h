#pragma once
// The WKV CUDA kernels run on the host: the source the GPU runs (kernels/wkv_kernels.cuh),
// compiled by g++ through kernels/kernel_shim.h and launched as a loop over blocks × threads
// (kernels/host_cuda.h). Slow; for the tests, which check the kernels' indexing, launch
// geometry and bf16 I/O against the CPU op on machines without a GPU. The pointers are host
// memory; arguments and results as kernels/wkv_cuda.h. One difference from the GPU: e^x is
// kernels/wkv_math.h's host_expf instead of the device's expf (a few ulps).
#include "kernels/host_cuda.h"
#include "kernels/wkv_kernel_args.h"

namespace rwkv::kernels::host {

cudaError_t wkv_forward(WkvIo io, const WkvCudaForward& args, cudaStream_t stream);
cudaError_t wkv_forward_chunked(WkvIo io, const WkvCudaForward& args, int64_t chunk, float* chunk_state,
                                cudaStream_t stream);
cudaError_t wkv_backward(WkvIo io, const WkvCudaBackward& args, cudaStream_t stream);
// The time-parallel backward (kernels/wkv_math.h "Chunked backward") in chunks of `chunk` tokens;
// `scratch` holds wkv_backward_chunked_scratch(args, chunk) floats on the kernels' device. Same
// outputs as wkv_backward, the workspace included, up to the order of fp32 sums.
int64_t wkv_backward_chunked_scratch(const WkvCudaBackward& args, int64_t chunk);
cudaError_t wkv_backward_chunked(WkvIo io, const WkvCudaBackward& args, int64_t chunk, float* scratch,
                                 cudaStream_t stream);

}  // namespace rwkv::kernels::host
