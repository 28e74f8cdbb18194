#include "trainer/io/weight_dtype.h"

#include <stdexcept>

#include <fmt/format.h>

namespace rwkv::io {

torch::ScalarType parse_weight_dtype(const std::string& text) {
  if (text == "fp32") return torch::kFloat32;
  if (text == "bf16") return torch::kBFloat16;
  if (text == "fp16") return torch::kFloat16;
  throw std::invalid_argument(
      fmt::format("unknown weight dtype '{}' (expected fp32, bf16 or fp16)", text));
}

std::string weight_dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "fp32";
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "fp16";
    default: return std::string(c10::toString(dtype));
  }
}

torch::Tensor to_cpu_contiguous(const torch::Tensor& t, torch::ScalarType dtype) {
  return t.detach().to(torch::kCPU, dtype).contiguous();
}

}  // namespace rwkv::io
