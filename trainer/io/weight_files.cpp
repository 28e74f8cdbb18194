#include "trainer/io/weight_files.h"

#include <map>
#include <stdexcept>

#include <fmt/format.h>

#include "rwkv/reference_layout.h"
#include "trainer/io/hf_folder.h"
#include "trainer/io/pth_reader.h"
#include "trainer/io/pth_writer.h"
#include "trainer/io/safetensors_file.h"

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

// Reference order, whatever order the file had (safetensors stores by offset, HF files by name).
NamedTensors in_reference_order(NamedTensors tensors, const ModelConfig& c) {
  std::map<std::string, torch::Tensor> by_name;
  for (auto& [name, t] : tensors) by_name[name] = std::move(t);
  NamedTensors out;
  out.reserve(by_name.size());
  for (const auto& t : reference_layout(c)) out.push_back({t.name, std::move(by_name.at(t.name))});
  return out;
}

}  // namespace

ModelWeights read_model_weights(const fs::path& path) {
  NamedTensors tensors;
  if (fs::is_directory(path)) tensors = read_hf_folder(path);
  else if (path.extension() == ".safetensors") tensors = read_safetensors(path);
  else if (fs::exists(path)) tensors = read_pth(path);
  else throw std::runtime_error(fmt::format("{}: no such file or folder", path.string()));

  const std::vector<TensorShape> shapes = shapes_of(tensors);
  ModelWeights w;
  w.config = infer_model_config(shapes, path.string());
  check_reference_layout(shapes, w.config, path.string());
  for (const auto& [name, t] : tensors)
    if (!t.is_floating_point())
      throw std::runtime_error(fmt::format("{}: tensor '{}' has dtype {}, expected a floating-point type",
                                           path.string(), name, c10::toString(t.scalar_type())));
  w.tensors = in_reference_order(std::move(tensors), w.config);
  return w;
}

void check_model_weights(const ModelWeights& weights, const ModelConfig& expected, const std::string& source) {
  check_reference_layout(shapes_of(weights.tensors), expected, source);
}

OutputKind output_kind(WeightFormat format) {
  switch (format) {
    case WeightFormat::Pth: return OutputKind::pth;
    case WeightFormat::Safetensors: return OutputKind::safetensors;
    case WeightFormat::HfFolder: return OutputKind::hf_folder;
  }
  return OutputKind::pth;
}

void write_model_weights(const ModelWeights& weights, WeightFormat format, const fs::path& out,
                         torch::ScalarType dtype, int64_t context_length, const ProgressCallback& progress) {
  switch (format) {
    case WeightFormat::Pth: write_pth(out, weights.tensors, dtype, progress); return;
    case WeightFormat::Safetensors: write_safetensors(out, weights.tensors, dtype, progress); return;
    case WeightFormat::HfFolder:
      write_hf_folder(out, weights.tensors, weights.config, context_length, dtype, progress);
      return;
  }
}

}  // namespace rwkv::io
