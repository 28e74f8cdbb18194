#pragma once
// The currency of the weight-file formats (.pth, safetensors, HF folders): an ordered list of
// named CPU tensors. The order is the order tensors appear in a file; names are whatever the
// format uses (the reference's state_dict keys for .pth, transformers' names for HF).
#include <torch/torch.h>

#include <string>
#include <vector>

namespace rwkv::io {

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;
};
using NamedTensors = std::vector<NamedTensor>;

// The element types the exported formats carry. parse_weight_dtype accepts "fp32", "bf16",
// "fp16" and throws naming the accepted values otherwise.
torch::ScalarType parse_weight_dtype(const std::string& text);
std::string weight_dtype_name(torch::ScalarType dtype);  // "fp32" | "bf16" | "fp16"

// Writers stream tensor by tensor: each source tensor is converted (device, dtype, layout) just
// before its bytes are written and the converted copy is dropped right after, so exporting never
// holds a second copy of the whole model.
torch::Tensor to_cpu_contiguous(const torch::Tensor& t, torch::ScalarType dtype);

}  // namespace rwkv::io
