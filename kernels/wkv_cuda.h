#pragma once
// The WKV CUDA kernels behind raw pointers (no torch headers on the nvcc side): one thread per
// (batch, channel) looping over any T chosen at run time, calling the recurrences of
// kernels/wkv_math.h. Launched on the caller's stream; kernels/wkv_op_cuda.cpp is the torch-side
// dispatch (device guard, current stream, checks). The kernels themselves are
// kernels/wkv_kernels.cuh, which kernels/wkv_host.h also runs on the host for the tests.
#include <cuda_runtime_api.h>

#include "kernels/wkv_kernel_args.h"
#include "kernels/wkv_schedule.h"

namespace rwkv::kernels::cuda {

// Return the launch status (cudaGetLastError after the launch).
cudaError_t wkv_forward(WkvIo io, const WkvCudaForward& args, cudaStream_t stream);
// The same result by the chunked formulation of wkv_math.h (parallel over time too): chunks of
// `chunk` tokens, threads over (chunk, b, c) for the summaries and the outputs, a scan over the
// chunks per (b, c) in between. `chunk_state` is (3, ceil(T/chunk), B, C) fp32 scratch.
cudaError_t wkv_forward_chunked(WkvIo io, const WkvCudaForward& args, int64_t chunk, float* chunk_state,
                                cudaStream_t stream);
// Two launches: the per-(b, c) recurrences, then one thread per channel summing ∂L/∂w and ∂L/∂u
// over the batch into ∂L/∂time_decay and ∂L/∂time_first (the chunked backward ends the same way).
cudaError_t wkv_backward(WkvIo io, const WkvCudaBackward& args, cudaStream_t stream);
// The time-parallel backward (kernels/wkv_math.h "Chunked backward") in chunks of `chunk` tokens;
// `scratch` holds wkv_backward_chunked_scratch(args, chunk) floats on the kernels' device. Same
// outputs as wkv_backward, the workspace included, up to the order of fp32 sums.
int64_t wkv_backward_chunked_scratch(const WkvCudaBackward& args, int64_t chunk);
cudaError_t wkv_backward_chunked(WkvIo io, const WkvCudaBackward& args, int64_t chunk, float* scratch,
                                 cudaStream_t stream);

// The figures kernels/wkv_schedule.h chooses the form by, for `device`: its SMs, the threads of
// the long walks resident at once (the CUDA occupancy calculator on these kernels), and its
// bandwidth per SM cycle (memory clock and bus width; the assumed figure where the driver reports
// none); the per-step chain and the issue rate stay assumed_wkv_gpu()'s.
cudaError_t wkv_gpu_figures(int device, WkvGpu& out);

}  // namespace rwkv::kernels::cuda
