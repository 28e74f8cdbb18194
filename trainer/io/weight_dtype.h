#pragma once
// What the weight-file writers (.pth, safetensors, HF folders) convert tensors to. The tensors
// themselves travel as rwkv::NamedTensors (rwkv/named_tensors.h), in file order.
#include <torch/torch.h>

#include <string>

#include "rwkv/named_tensors.h"

namespace rwkv::io {

// The element types the exported formats carry. parse_weight_dtype accepts "fp32", "bf16",
// "fp16" and throws naming the accepted values otherwise.
torch::ScalarType parse_weight_dtype(const std::string& text);
std::string weight_dtype_name(torch::ScalarType dtype);  // "fp32" | "bf16" | "fp16"

// Writers stream tensor by tensor: each source tensor is converted (device, dtype, layout) just
// before its bytes are written and the converted copy is dropped right after, so exporting never
// holds a second copy of the whole model.
torch::Tensor to_cpu_contiguous(const torch::Tensor& t, torch::ScalarType dtype);

}  // namespace rwkv::io
