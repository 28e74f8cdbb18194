// A build without nvcc: the CUDA entry points of kernels/wkv_op.h exist but refuse.
#include <c10/util/Exception.h>

#include "kernels/wkv_op.h"

namespace rwkv::kernels {

void wkv_forward_cuda(const WkvForwardArgs&) { TORCH_CHECK(false, "wkv: this build has no CUDA kernels"); }

void wkv_backward_cuda(const WkvBackwardArgs&, const at::Tensor&) {
  TORCH_CHECK(false, "wkv: this build has no CUDA kernels");
}

WkvGpu wkv_gpu_figures_cuda(int) { TORCH_CHECK(false, "wkv: this build has no CUDA kernels"); }

int64_t wkv_chunk_cuda(const at::Tensor&) { TORCH_CHECK(false, "wkv: this build has no CUDA kernels"); }

}  // namespace rwkv::kernels
