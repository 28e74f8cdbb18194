#pragma once
// The weights of `checkpoint.init_from: PATH` (paper §5.2: a run starts from released or exported
// weights, e.g. to extend the context): anything trainer/checkpoint/model_source.h reads — another run's
// checkpoint (step-N, its checkpoints/ or run directory: weights only, no Adam state), a .pth under
// the reference keys as the reference saves them (bf16, time_mix (1, 1, D), often an OrderedDict)
// or as `rwkv export`/`rwkv import` write them, a .safetensors file or an HF folder. The model's
// parameters have the reference names and shapes.
#include <functional>
#include <string>

#include <torch/torch.h>

#include "rwkv/model_config.h"
#include "rwkv/named_tensors.h"

namespace rwkv::trainer {

// name → fp32 CPU tensor, every key and shape of `model`'s reference layout. Throws naming `path`
// and each missing, unexpected or mis-shaped tensor (e.g. a file of another n_embd). Skipped torn
// checkpoints are reported through `warn`.
NamedTensors read_init_weights(const std::string& path, const ModelConfig& model,
                               const std::function<void(const std::string&)>& warn = {});

}  // namespace rwkv::trainer
