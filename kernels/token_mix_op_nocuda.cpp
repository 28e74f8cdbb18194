// A build without nvcc: the CUDA entry points of kernels/token_mix_op.h exist but refuse.
#include <c10/util/Exception.h>

#include "kernels/token_mix_op.h"

namespace rwkv::kernels {

void token_mix_forward_cuda(const TokenMixForwardArgs&) { TORCH_CHECK(false, "token mix: this build has no CUDA kernels"); }

void token_mix_backward_cuda(const TokenMixBackwardArgs&) {
  TORCH_CHECK(false, "token mix: this build has no CUDA kernels");
}

}  // namespace rwkv::kernels
