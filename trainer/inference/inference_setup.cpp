#include "trainer/inference/inference_setup.h"

#include <stdexcept>

#include <fmt/format.h>

#include "common/log/log.h"
#include "trainer/checkpoint/model_source.h"
#include "trainer/config/device.h"

namespace rwkv::cli {

InferenceSetup load_for_inference(const std::string& source, const std::string& tokenizer, const std::string& device) {
  torch::Device dev(torch::kCPU);
  try {
    dev = trainer::resolve_device(device);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--device ") + e.what());
  }
  const io::ModelSource src =
      io::read_model_source(source, [](const std::string& w) { logging::warn(w); });
  InferenceSetup out;
  out.tokenizer = data::load_tokenizer(!tokenizer.empty() ? tokenizer : !src.tokenizer.empty() ? src.tokenizer : "byte");
  const int64_t V = src.weights.config.vocab_size;
  if (out.tokenizer->vocab_size() > V)
    throw std::runtime_error(fmt::format("tokenizer {} has {} ids but the model {} has a vocabulary of {}",
                                         out.tokenizer->name(), out.tokenizer->vocab_size(), src.description, V));
  out.model = io::build_model(src.weights, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  out.ctx_len = src.ctx_len;
  out.description = src.description;
  return out;
}

}  // namespace rwkv::cli
