#include "rwkv/named_tensors.h"

#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace rwkv {

NamedTensors named_parameters(torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& kv : module.named_parameters()) out.push_back({kv.key(), kv.value()});
  return out;
}

const torch::Tensor* find_tensor(const NamedTensors& tensors, const std::string& name) {
  for (const auto& t : tensors)
    if (t.name == name) return &t.tensor;
  return nullptr;
}

const torch::Tensor& require_tensor(const NamedTensors& tensors, const std::string& name, c10::IntArrayRef shape,
                                    const std::string& what) {
  const torch::Tensor* t = find_tensor(tensors, name);
  if (t == nullptr) throw std::runtime_error(fmt::format("{} has no '{}'", what, name));
  if (!t->sizes().equals(shape))
    throw std::runtime_error(fmt::format("{} '{}' has shape ({}), expected ({})", what, name, fmt::join(t->sizes(), ", "),
                                         fmt::join(shape, ", ")));
  return *t;
}

std::vector<TensorShape> shapes_of(const NamedTensors& tensors) {
  std::vector<TensorShape> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) out.push_back({t.name, t.tensor.sizes().vec()});
  return out;
}

void load_weights(const NamedTensors& params, const NamedTensors& weights, const std::string& source) {
  check_layout(shapes_of(weights), shapes_of(params), source, "the model's parameters");
  torch::NoGradGuard no_grad;
  for (const auto& p : params) p.tensor.copy_(*find_tensor(weights, p.name));
}

}  // namespace rwkv
