#pragma once
// WKV on the CPU: the recurrences of kernels/wkv_math.h run over blocks of contiguous channels
// (so the compiler vectorizes across C) and in parallel over (batch, channel block).
#include "kernels/wkv_op.h"

namespace rwkv::kernels {

// Arguments validated by wkv_forward / wkv_backward (kernels/wkv_op.h). `workspace` is
// (3, B, T, C) in the accumulation dtype.
void wkv_forward_cpu(const WkvForwardArgs& args);
void wkv_backward_cpu(const WkvBackwardArgs& args, const at::Tensor& workspace);

}  // namespace rwkv::kernels
