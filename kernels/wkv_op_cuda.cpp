// The torch side of the WKV CUDA kernels: device guard, current stream, pointers.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>

#include "kernels/wkv_cuda.h"
#include "kernels/wkv_op.h"

namespace rwkv::kernels {
namespace {

// The switch for the chunked (time-parallel) forward and backward: RWKV_WKV_CHUNK=N (tokens per
// chunk) turns both on; unset or 0 keeps the one-thread-per-(b, c) kernels. Off by default until
// the GPU bundle (scripts/gpu-bundle.sh) has measured where it pays (small B·C, long T).
int64_t chunk_tokens() {
  const char* env = std::getenv("RWKV_WKV_CHUNK");
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  const long long n = std::strtoll(env, &end, 10);
  TORCH_CHECK(*end == '\0' && n >= 0, "RWKV_WKV_CHUNK must be a non-negative integer (tokens per chunk), got '",
              env, "'");
  return n;
}

}  // namespace

void wkv_forward_cuda(const WkvForwardArgs& a) {
  const WkvIo io = wkv_kernel_io(a.k);
  const c10::cuda::CUDAGuard guard(a.k.device());
  const WkvCudaForward p = wkv_kernel_args(a);
  const int64_t chunk = chunk_tokens();
  if (chunk > 0 && chunk < p.T) {
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
  const int64_t chunk = chunk_tokens();
  if (chunk > 0 && chunk < p.T) {
    const at::Tensor scratch = at::empty({cuda::wkv_backward_chunked_scratch(p, chunk)}, a.k.options().dtype(at::kFloat));
    C10_CUDA_CHECK(
        cuda::wkv_backward_chunked(io, p, chunk, scratch.data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
  } else {
    C10_CUDA_CHECK(cuda::wkv_backward(io, p, c10::cuda::getCurrentCUDAStream()));
  }
}

}  // namespace rwkv::kernels
