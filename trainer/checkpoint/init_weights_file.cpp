#include "trainer/checkpoint/init_weights_file.h"

#include "trainer/checkpoint/model_source.h"
#include "trainer/io/weight_files.h"

namespace rwkv::trainer {

NamedTensors read_init_weights(const std::string& path, const ModelConfig& model,
                               const std::function<void(const std::string&)>& warn) {
  const io::ModelWeights weights =
      io::read_model_source(path, warn ? warn : [](const std::string&) {}).weights;
  io::check_model_weights(weights, model, path + " (checkpoint.init_from)");
  NamedTensors out;
  // bf16 → fp32 is exact, so the fp32 master weights start from the file's values.
  for (const auto& t : weights.tensors) out.push_back({t.name, t.tensor.to(torch::kFloat32)});
  return out;
}

}  // namespace rwkv::trainer
