// The WKV kernels (kernels/wkv_kernels.cuh) for the GPU; the declarations are kernels/wkv_cuda.h.
#include "kernels/wkv_cuda.h"

#include "kernels/wkv_kernels.cuh"

namespace rwkv::kernels::cuda {

cudaError_t wkv_gpu_figures(int device, WkvGpu& out) {
  out = assumed_wkv_gpu();
  int sms = 0, threads_per_sm = 0, clock_khz = 0, memory_khz = 0, bus_bits = 0;
  cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device);
  if (e != cudaSuccess) return e;
  // Resident threads: the fewest blocks per SM among the long walks (registers bound them).
  int blocks = threads_per_sm / kThreads;
  const void* walks[] = {reinterpret_cast<const void*>(forward_kernel<__nv_bfloat16>),
                         reinterpret_cast<const void*>(backward_kernel<__nv_bfloat16>),
                         reinterpret_cast<const void*>(backward_adjoint_kernel<__nv_bfloat16, true>)};
  for (const void* kernel : walks) {
    int b = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, kThreads, 0);
    if (e != cudaSuccess) return e;
    blocks = b < blocks ? b : blocks;
  }
  out.sms = sms;
  out.resident_threads = static_cast<int64_t>(sms) * (blocks > 0 ? blocks : 1) * kThreads;
  // Bandwidth from the memory clock and bus (double data rate), at the 90% a copy reaches
  // (../shared/GPU.md), per SM cycle; the assumed figure where the driver reports no clocks.
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess && clock_khz > 0 &&
      memory_khz > 0 && bus_bits > 0)
    out.bytes_per_sm_cycle = 0.9 * 2.0 * memory_khz * (bus_bits / 8.0) / (static_cast<double>(sms) * clock_khz);
  cudaGetLastError();  // an attribute the driver lacks leaves no sticky error behind
  return cudaSuccess;
}

}  // namespace rwkv::kernels::cuda
