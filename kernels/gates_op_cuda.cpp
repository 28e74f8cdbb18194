// The torch side of the gate and activation CUDA kernels: device guard, current stream, pointers.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/gates_cuda.h"
#include "kernels/gates_op.h"

namespace rwkv::kernels {

void gate_forward_cuda(const GateForwardArgs& a) {
  const c10::cuda::CUDAGuard guard(a.r.device());
  C10_CUDA_CHECK(cuda::gate_forward(gate_kernel_args(a), c10::cuda::getCurrentCUDAStream()));
}

void gate_backward_cuda(const GateBackwardArgs& a) {
  const c10::cuda::CUDAGuard guard(a.r.device());
  C10_CUDA_CHECK(cuda::gate_backward(gate_kernel_args(a), c10::cuda::getCurrentCUDAStream()));
}

void relu_square_forward_cuda(const ReluSquareForwardArgs& a) {
  const c10::cuda::CUDAGuard guard(a.k.device());
  C10_CUDA_CHECK(cuda::relu_square_forward(relu_square_kernel_args(a), c10::cuda::getCurrentCUDAStream()));
}

void relu_square_backward_cuda(const ReluSquareBackwardArgs& a) {
  const c10::cuda::CUDAGuard guard(a.k.device());
  C10_CUDA_CHECK(cuda::relu_square_backward(relu_square_kernel_args(a), c10::cuda::getCurrentCUDAStream()));
}

}  // namespace rwkv::kernels
