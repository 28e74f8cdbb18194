#pragma once
// Random RWKV-4 weights for the export, parity and inference tests.
#include <torch/torch.h>

#include <cmath>

#include "rwkv/reference_layout.h"
#include "trainer/io/weight_dtype.h"

namespace rwkv::test {

// Non-trivial weights in the reference layout: decays spread over the range training produces,
// time_mix strictly inside (0, 1), layer norms away from identity, projections large enough that
// every block changes the residual stream.
inline NamedTensors random_model(const ModelConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  NamedTensors out;
  for (const auto& [name, shape] : reference_layout(c)) {
    torch::Tensor t;
    if (name.ends_with("time_decay")) t = torch::rand(shape) * 7 - 5;
    else if (name.ends_with("time_first")) t = torch::randn(shape) * 0.5 + std::log(0.3);
    else if (name.find("time_mix") != std::string::npos) t = torch::rand(shape) * 0.9 + 0.05;
    else if (name.ends_with("ln0.weight") || name.ends_with("ln1.weight") || name.ends_with("ln2.weight") ||
             name == "ln_out.weight") t = 1 + 0.2 * torch::randn(shape);
    else if (name.ends_with(".bias")) t = 0.1 * torch::randn(shape);
    else t = torch::randn(shape) / std::sqrt(static_cast<double>(shape.back()));
    out.push_back({name, t});
  }
  return out;
}

}  // namespace rwkv::test
