#pragma once
// The one currency for "tensors with names" across the project: model parameters, weight files
// (.pth, safetensors, HF folders; trainer/io/), checkpoint contents and Adam moments. An ordered
// list, because files and optimizers have an order (a file's, the module's); lookups by name go
// through find_tensor. Names are whatever the source uses (the reference state_dict keys for the
// model and .pth files, transformers' names inside an HF folder).
#include <torch/torch.h>

#include <string>
#include <vector>

#include "rwkv/reference_layout.h"

namespace rwkv {

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;
};
using NamedTensors = std::vector<NamedTensor>;

// A module's parameters in registration order; for RWKV that is the reference state_dict
// (rwkv/model.h). The tensors alias the parameters.
NamedTensors named_parameters(torch::nn::Module& module);

// The tensor called `name`, or nullptr.
const torch::Tensor* find_tensor(const NamedTensors& tensors, const std::string& name);

// The tensor called `name`, which must have `shape`; otherwise throws std::runtime_error
// "<what> has no '<name>'" or "<what> '<name>' has shape (..), expected (..)".
const torch::Tensor& require_tensor(const NamedTensors& tensors, const std::string& name, c10::IntArrayRef shape,
                                    const std::string& what);

// Names and shapes, for check_reference_layout (rwkv/reference_layout.h).
std::vector<TensorShape> shapes_of(const NamedTensors& tensors);

// Copies `weights` into `params` (a module's named_parameters), after checking that `weights` has
// exactly their names and shapes (check_layout: every name present, no extra one, every shape
// equal; one message listing what is wrong, naming `source`). dtype and device are converted.
// The one routine that puts outside tensors into a model: resume, init_from, inference, export.
void load_weights(const NamedTensors& params, const NamedTensors& weights, const std::string& source);

}  // namespace rwkv
