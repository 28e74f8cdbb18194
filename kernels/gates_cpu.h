#pragma once
// The sigmoid gate and the squared ReLU on the CPU: kernels/gates_math.h over contiguous blocks of
// elements in parallel, each block one vectorizable loop.
#include "kernels/gates_op.h"

namespace rwkv::kernels {

// Arguments validated by the entry points of kernels/gates_op.h.
void gate_forward_cpu(const GateForwardArgs& args);
void gate_backward_cpu(const GateBackwardArgs& args);
void relu_square_forward_cpu(const ReluSquareForwardArgs& args);
void relu_square_backward_cpu(const ReluSquareBackwardArgs& args);

}  // namespace rwkv::kernels
