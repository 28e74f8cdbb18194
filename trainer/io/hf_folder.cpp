#include "trainer/io/hf_folder.h"

#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rwkv/hf_naming.h"
#include "rwkv/reference_layout.h"
#include "common/durable_file.h"
#include "trainer/io/output_path.h"
#include "trainer/io/pth_reader.h"
#include "trainer/io/safetensors_file.h"

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

const char* hf_dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: throw std::invalid_argument(fmt::format("no HF dtype name for {}", c10::toString(t)));
  }
}

}  // namespace

void write_hf_folder(const fs::path& folder, const NamedTensors& reference, const ModelConfig& config,
                     int64_t context_length, std::optional<torch::ScalarType> dtype,
                     const ProgressCallback& progress) {
  if (reference.empty()) throw std::invalid_argument("no tensors to export");
  NamedTensors hf;
  hf.reserve(reference.size());
  for (const auto& [name, t] : reference) hf.push_back({reference_to_hf_name(name), t});  // no copy

  nlohmann::ordered_json cfg = {
      {"architectures", nlohmann::ordered_json::array({"RwkvForCausalLM"})},
      {"model_type", "rwkv"},
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.n_embd},
      {"num_hidden_layers", config.n_layer},
      {"attention_hidden_size", config.att()},
      {"intermediate_size", config.ffn()},
      {"context_length", context_length},
      {"layer_norm_epsilon", 1e-5},
      {"rescale_every", 0},
      {"bos_token_id", 0},
      {"eos_token_id", 0},
      {"tie_word_embeddings", false},
      {"use_cache", true},
      {"torch_dtype", hf_dtype_name(dtype.value_or(reference.front().tensor.scalar_type()))},
  };
  write_durably(folder, [&](const fs::path& temp) {
    fs::create_directory(temp);
    std::ofstream f(temp / "config.json");
    f << cfg.dump(2) << "\n";
    f.close();
    if (!f) throw std::runtime_error(fmt::format("{}: cannot write config.json", folder.string()));
    write_safetensors(temp / "model.safetensors", hf, dtype, progress);
    // Lets a later `rwkv export --force` replace this folder (trainer/io/output_path.h).
    std::ofstream marker(temp / kOutputMarker);
    marker << "written by rwkv export\n";
    if (!marker.flush()) throw std::runtime_error(fmt::format("{}: cannot write {}", folder.string(), kOutputMarker));
  });
}

NamedTensors read_hf_folder(const fs::path& folder) {
  const std::string label = folder.string();
  const fs::path config_path = folder / "config.json";
  if (!fs::is_regular_file(config_path))
    throw std::runtime_error(fmt::format("{}: no config.json (not a Hugging Face model folder)", label));
  nlohmann::json cfg;
  try {
    std::ifstream f(config_path);
    cfg = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("{}: invalid JSON: {}", config_path.string(), e.what()));
  }
  if (cfg.value("model_type", std::string()) != "rwkv")
    throw std::runtime_error(fmt::format("{}: model_type is {}, expected \"rwkv\"", config_path.string(),
                                         cfg.contains("model_type") ? cfg["model_type"].dump() : "missing"));

  NamedTensors hf;
  fs::path weights = folder / "model.safetensors";
  if (fs::is_regular_file(weights)) {
    hf = read_safetensors(weights);
  } else if (weights = folder / "pytorch_model.bin"; fs::is_regular_file(weights)) {
    hf = read_pth(weights);
  } else {
    throw std::runtime_error(fmt::format("{}: neither model.safetensors nor pytorch_model.bin found "
                                         "(sharded checkpoints are not supported)", label));
  }
  NamedTensors reference;
  reference.reserve(hf.size());
  for (auto& [name, t] : hf) {
    try {
      reference.push_back({hf_to_reference_name(name), std::move(t)});
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(fmt::format("{}: {}", weights.string(), e.what()));
    }
  }
  const std::vector<TensorShape> shapes = shapes_of(reference);
  const ModelConfig c = infer_model_config(shapes, weights.string());
  check_reference_layout(shapes, c, weights.string());
  // config.json must describe the same model as the tensors.
  const std::pair<const char*, int64_t> fields[] = {{"vocab_size", c.vocab_size},
                                                    {"hidden_size", c.n_embd},
                                                    {"num_hidden_layers", c.n_layer},
                                                    {"attention_hidden_size", c.att()},
                                                    {"intermediate_size", c.ffn()}};
  for (const auto& [key, value] : fields) {
    if (!cfg.contains(key) || cfg[key].is_null()) continue;  // transformers' defaults derive these
    if (!cfg[key].is_number_integer() || cfg[key].get<int64_t>() != value)
      throw std::runtime_error(fmt::format("{}: {} is {} but the weights have {}", config_path.string(), key,
                                           cfg[key].dump(), value));
  }
  return reference;
}

}  // namespace rwkv::io
