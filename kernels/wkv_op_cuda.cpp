// The torch side of the WKV CUDA kernels: device guard, current stream, pointers.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "kernels/wkv_cuda.h"
#include "kernels/wkv_op.h"
#include "kernels/wkv_schedule.h"

namespace rwkv::kernels {
namespace {

// Tokens per chunk for a call on the (B, T, C) CUDA tensor k, 0 for the sequential kernels:
// RWKV_WKV_CHUNK when it is set to a number (read every call, so a test or a benchmark can switch
// it), else the schedule's policy.
int64_t chunk_tokens(const at::Tensor& k) {
  std::optional<int64_t> forced;
  try {
    forced = wkv_chunk_override(std::getenv("RWKV_WKV_CHUNK"));
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK(false, e.what());
  }
  return wkv_chunk_for({k.size(0), k.size(1), k.size(2), static_cast<int64_t>(k.element_size())}, forced,
                       wkv_gpu_figures_cuda(k.get_device()));
}

}  // namespace

WkvGpu wkv_gpu_figures_cuda(int device) {
  static std::mutex mutex;
  static std::map<int, WkvGpu> known;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = known.find(device);
  if (it == known.end()) {
    const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
    WkvGpu g;
    C10_CUDA_CHECK(cuda::wkv_gpu_figures(device, g));
    it = known.emplace(device, g).first;
  }
  return it->second;
}

int64_t wkv_chunk_cuda(const at::Tensor& k) {
  TORCH_CHECK(k.is_cuda() && k.dim() == 3, "wkv_chunk_cuda: k must be a (B, T, C) CUDA tensor");
  const c10::cuda::CUDAGuard guard(k.device());
  return chunk_tokens(k);
}

void wkv_forward_cuda(const WkvForwardArgs& a) {
  const WkvIo io = wkv_kernel_io(a.k);
  const c10::cuda::CUDAGuard guard(a.k.device());
  const WkvCudaForward p = wkv_kernel_args(a);
  const int64_t chunk = chunk_tokens(a.k);
  if (chunk > 0) {
    const at::Tensor scratch = at::empty({3, (p.T + chunk - 1) / chunk, p.B, p.C}, a.k.options().dtype(at::kFloat));
    C10_CUDA_CHECK(
        cuda::wkv_forward_chunked(io, p, chunk, scratch.data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
  } else {
    C10_CUDA_CHECK(cuda::wkv_forward(io, p, c10::cuda::getCurrentCUDAStream()));
  }
}

void wkv_backward_cuda(const WkvBackwardArgs& a, const at::Tensor& workspace) {
  const WkvIo io = wkv_kernel_io(a.k);
  const c10::cuda::CUDAGuard guard(a.k.device());
  const WkvCudaBackward p = wkv_kernel_args(a, workspace);
  const int64_t chunk = chunk_tokens(a.k);
  if (chunk > 0) {
    const at::Tensor scratch = at::empty({cuda::wkv_backward_chunked_scratch(p, chunk)}, a.k.options().dtype(at::kFloat));
    C10_CUDA_CHECK(
        cuda::wkv_backward_chunked(io, p, chunk, scratch.data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
  } else {
    C10_CUDA_CHECK(cuda::wkv_backward(io, p, c10::cuda::getCurrentCUDAStream()));
  }
}

}  // namespace rwkv::kernels
