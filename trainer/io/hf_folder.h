#pragma once
// A Hugging Face transformers model folder for RWKV-4 (RwkvForCausalLM): config.json and
// model.safetensors with transformers' weight names (rwkv/hf_naming.h). Written without Python;
// `RwkvForCausalLM.from_pretrained(folder)` loads it offline.
#include <filesystem>
#include <optional>

#include "common/progress.h"
#include "rwkv/model_config.h"
#include "trainer/io/weight_dtype.h"

namespace rwkv::io {

// `reference` holds the model's weights under the reference keys (rwkv/README.md "Forward pass"), already checked
// against `config`. config.json gets rescale_every 0 (transformers would otherwise halve weights
// every 6 layers in eval mode), bos/eos 0, untied head, layer_norm_epsilon 1e-5 and
// `context_length` (the ctx_len the model was trained at). The folder appears under `folder`
// only when complete; an existing folder of that name is replaced. `progress` as write_safetensors'.
void write_hf_folder(const std::filesystem::path& folder, const NamedTensors& reference,
                     const ModelConfig& config, int64_t context_length,
                     std::optional<torch::ScalarType> dtype, const ProgressCallback& progress = {});

// Reads a transformers RWKV folder (model.safetensors, or a single-file pytorch_model.bin) into
// reference keys, checking config.json's sizes against the tensors. Throws naming the folder,
// file and tensor.
NamedTensors read_hf_folder(const std::filesystem::path& folder);

}  // namespace rwkv::io
