#pragma once
// The weights of `checkpoint.init_from: FILE` (paper §5.2: a run starts from released or exported
// weights, e.g. to extend the context): a .pth under the reference keys, as the reference saves
// them (bf16, time_mix (1, 1, D), often an OrderedDict) or as `rwkv export`/`rwkv import` write
// them. Read through trainer/weight_files.h; the model's parameters have the same names and shapes.
#include <map>
#include <string>

#include <torch/torch.h>

#include "rwkv/model_config.h"

namespace rwkv::trainer {

// name → fp32 CPU tensor, every key and shape of `model`'s reference layout. Throws naming `path`
// and each missing, unexpected or mis-shaped tensor (e.g. a file of another n_embd).
std::map<std::string, torch::Tensor> read_init_weights(const std::string& path, const ModelConfig& model);

}  // namespace rwkv::trainer
