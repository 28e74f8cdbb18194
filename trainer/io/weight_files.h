#pragma once
// One entry point for "a file of RWKV-4 weights" in any of the formats the project reads, so the
// export/import commands and tests need not care which one they got:
//   *.pth            torch.save'd dict/OrderedDict under the reference keys (released checkpoints,
//                    our own export)
//   *.safetensors    the same keys in safetensors
//   a folder         a transformers RWKV folder (config.json + model.safetensors / pytorch_model.bin)
// Everything comes back under the reference keys, in reference order, checked against the layout
// of the model size the tensors imply.
#include <filesystem>
#include <optional>

#include "common/progress.h"
#include "rwkv/model_config.h"
#include "trainer/io/output_path.h"
#include "trainer/io/weight_dtype.h"

namespace rwkv::io {

struct ModelWeights {
  ModelConfig config;
  NamedTensors tensors;  // reference keys, reference order
};

ModelWeights read_model_weights(const std::filesystem::path& path);

// Throws naming `source` and the offending tensors unless `weights` fits `expected` exactly.
void check_model_weights(const ModelWeights& weights, const ModelConfig& expected, const std::string& source);

enum class WeightFormat { Pth, HfFolder, Safetensors };

// What check_output_path (trainer/io/output_path.h) counts as an earlier output of `format`.
OutputKind output_kind(WeightFormat format);

// Writes `weights` as `format` to `out` (atomically), converting to `dtype` tensor by tensor.
// `context_length` goes into an HF folder's config.json. `progress` gets the tensor bytes written
// so far and their total.
void write_model_weights(const ModelWeights& weights, WeightFormat format, const std::filesystem::path& out,
                         torch::ScalarType dtype, int64_t context_length, const ProgressCallback& progress = {});

}  // namespace rwkv::io
