// The torch side of the token-shift mix CUDA kernels: device guard, current stream, pointers, and
// the sum of the per-(b, chunk) ∂L/∂μ rows.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/token_mix_cuda.h"
#include "kernels/token_mix_op.h"

namespace rwkv::kernels {

void token_mix_forward_cuda(const TokenMixForwardArgs& a) {
  const c10::cuda::CUDAGuard guard(a.x.device());
  C10_CUDA_CHECK(cuda::token_mix_forward(token_mix_kernel_io(a.x, a.out[0]), token_mix_kernel_args(a, kTokenMixChunk),
                                         c10::cuda::getCurrentCUDAStream()));
}

void token_mix_backward_cuda(const TokenMixBackwardArgs& a) {
  const c10::cuda::CUDAGuard guard(a.x.device());
  const int64_t B = a.x.size(0), T = a.x.size(1), C = a.x.size(2);
  const int64_t rows = B * ((T + kTokenMixChunk - 1) / kTokenMixChunk);
  const at::Tensor partial =
      at::empty({static_cast<int64_t>(a.mu.size()), rows, C}, a.x.options().dtype(at::kFloat));
  C10_CUDA_CHECK(cuda::token_mix_backward(token_mix_kernel_io(a.x, a.gout[0]),
                                          token_mix_kernel_args(a, kTokenMixChunk, partial),
                                          c10::cuda::getCurrentCUDAStream()));
  for (size_t m = 0; m < a.gmu.size(); ++m) {
    at::Tensor gmu = a.gmu[m];  // shares the caller's storage: the sum lands in it
    at::sum_out(gmu, partial[static_cast<int64_t>(m)], {0});
  }
}

}  // namespace rwkv::kernels
