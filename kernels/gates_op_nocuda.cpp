// A build without nvcc: the CUDA entry points of kernels/gates_op.h exist but refuse.
#include <c10/util/Exception.h>

#include "kernels/gates_op.h"

namespace rwkv::kernels {

void gate_forward_cuda(const GateForwardArgs&) { TORCH_CHECK(false, "sigmoid gate: this build has no CUDA kernels"); }
void gate_backward_cuda(const GateBackwardArgs&) { TORCH_CHECK(false, "sigmoid gate: this build has no CUDA kernels"); }
void relu_square_forward_cuda(const ReluSquareForwardArgs&) {
  TORCH_CHECK(false, "relu square: this build has no CUDA kernels");
}
void relu_square_backward_cuda(const ReluSquareBackwardArgs&) {
  TORCH_CHECK(false, "relu square: this build has no CUDA kernels");
}

}  // namespace rwkv::kernels
