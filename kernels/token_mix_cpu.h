#pragma once
// Token shift + μ-mixes on the CPU: kernels/token_mix_math.h over contiguous channel rows (so the
// compiler vectorizes across C), in parallel over (batch row, chunk of tokens).
#include "kernels/token_mix_op.h"

namespace rwkv::kernels {

// Arguments validated by token_mix_forward / token_mix_backward (kernels/token_mix_op.h).
void token_mix_forward_cpu(const TokenMixForwardArgs& args);
void token_mix_backward_cpu(const TokenMixBackwardArgs& args);

}  // namespace rwkv::kernels
