#pragma once
// "A model" as the inference and export commands take it on the command line: any of
//   a trainer checkpoint     <run>/checkpoints/step-N (trainer/checkpoint/checkpoint.h): the weights,
//                            read parameter by parameter from its shard files (or weights.pt of a
//                            single-file checkpoint), and the model shape from its config.yaml;
//   a checkpoints directory  the newest complete step-N in it (torn/corrupt newer ones skipped
//                            with a warning), or a run directory holding checkpoints/;
//   a weights file/folder    .pth, .safetensors or an HF folder (trainer/io/weight_files.h).
// A checkpoint also tells the tokenizer and the context length it was trained with; of its files
// (all checked against COMPLETE) only the weights are kept in memory, not the Adam moments.
#include <filesystem>
#include <functional>
#include <string>

#include "rwkv/model.h"
#include "trainer/io/weight_files.h"

namespace rwkv::io {

struct ModelSource {
  ModelWeights weights;     // reference keys and order, checked against weights.config
  std::string tokenizer;    // data.tokenizer of a checkpoint's config; empty for weight files
  int64_t ctx_len = 0;      // the last stage's ctx_len of a checkpoint; 0 for weight files
  std::string description;  // what was read, for messages ("checkpoint …/step-00000040")
};

// Throws std::runtime_error naming `path` (and the tensor) when nothing usable is there.
// `warn` gets each skipped torn/corrupt checkpoint.
ModelSource read_model_source(const std::filesystem::path& path,
                              const std::function<void(const std::string&)>& warn);

// An RWKV module holding `weights` (copied, converted to `options`' dtype and device), in eval mode.
RWKV build_model(const ModelWeights& weights, const torch::TensorOptions& options);

}  // namespace rwkv::io
