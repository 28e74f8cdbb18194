#include "trainer/checkpoint/model_source.h"

#include <stdexcept>

#include <fmt/format.h>

#include "rwkv/reference_layout.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/run_config.h"

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

// A step-N directory's weights, checked against the model: section of its own config.yaml.
ModelSource from_checkpoint(const fs::path& dir, trainer::Checkpoint ck) {
  const std::string label = (dir / "config.yaml").string();
  const trainer::RunConfig cfg = trainer::parse_run_config(ck.config_yaml, label);
  ModelSource out;
  out.description = fmt::format("checkpoint {} (step {})", dir.string(), ck.progress.step);
  out.weights.config = cfg.model;
  out.tokenizer = cfg.data.tokenizer;
  out.ctx_len = cfg.stages.back().ctx_len;
  check_reference_layout(shapes_of(ck.weights), cfg.model, fmt::format("{} (against {})", dir.string(), label));
  // Reference order (checkpoints of the pickle_save era hold them sorted by name).
  for (const auto& t : reference_layout(cfg.model))
    out.weights.tensors.push_back({t.name, *find_tensor(ck.weights, t.name)});
  return out;
}

}  // namespace

ModelSource read_model_source(const fs::path& path, const std::function<void(const std::string&)>& warn) {
  if (fs::is_directory(path) && !fs::exists(path / "config.json")) {  // config.json: an HF folder
    if (fs::exists(path / "COMPLETE") || fs::exists(path / "index.json") || fs::exists(path / "weights.pt"))
      return from_checkpoint(path, trainer::load_checkpoint(path, trainer::CheckpointParts::weights));
    const fs::path dir = fs::is_directory(path / "checkpoints") ? path / "checkpoints" : path;
    auto latest = trainer::load_latest_checkpoint(dir, warn, trainer::CheckpointParts::weights);
    if (!latest)
      throw std::runtime_error(fmt::format("{}: neither a checkpoint, a directory of checkpoints, a run directory "
                                           "nor an HF folder (no complete step-N checkpoint, no config.json)",
                                           path.string()));
    return from_checkpoint(latest->first, std::move(latest->second));
  }
  ModelSource out;
  out.weights = read_model_weights(path);
  out.description = path.string();
  return out;
}

RWKV build_model(const ModelWeights& weights, const torch::TensorOptions& options) {
  RWKV model(weights.config, options);
  load_weights(named_parameters(*model), weights.tensors, "build_model");
  model->eval();
  return model;
}

}  // namespace rwkv::io
