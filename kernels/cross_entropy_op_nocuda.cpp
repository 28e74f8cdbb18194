// A build without nvcc: the CUDA entry points of kernels/cross_entropy_op.h exist but refuse.
#include <c10/util/Exception.h>

#include "kernels/cross_entropy_op.h"

namespace rwkv::kernels {

XentResult cross_entropy_forward_cuda(const at::Tensor&, const at::Tensor&) {
  TORCH_CHECK(false, "cross_entropy: this build has no CUDA kernels");
}

at::Tensor cross_entropy_backward_cuda(const at::Tensor&, const at::Tensor&, const XentRows&, const at::Tensor&,
                                       double) {
  TORCH_CHECK(false, "cross_entropy: this build has no CUDA kernels");
}

}  // namespace rwkv::kernels
