#include "trainer/inference/inference_setup.h"

#include <stdexcept>

#include <fmt/format.h>

#include "trainer/checkpoint/model_source.h"

namespace rwkv::cli {

InferenceSetup load_for_inference(const std::string& source, const std::string& tokenizer, const std::string& device) {
  if (device == "cuda" && !torch::cuda::is_available())
    throw std::runtime_error("--device cuda: torch sees no CUDA device");
  const io::ModelSource src =
      io::read_model_source(source, [](const std::string& w) { fmt::print(stderr, "warning: {}\n", w); });
  InferenceSetup out;
  out.tokenizer = data::load_tokenizer(!tokenizer.empty() ? tokenizer : !src.tokenizer.empty() ? src.tokenizer : "byte");
  const int64_t V = src.weights.config.vocab_size;
  if (out.tokenizer->vocab_size() > V)
    throw std::runtime_error(fmt::format("tokenizer {} has {} ids but the model {} has a vocabulary of {}",
                                         out.tokenizer->name(), out.tokenizer->vocab_size(), src.description, V));
  const bool cuda = device == "cuda" || (device == "auto" && torch::cuda::is_available());
  out.model = io::build_model(src.weights, torch::TensorOptions().dtype(torch::kFloat32).device(
                                               cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU)));
  out.ctx_len = src.ctx_len;
  out.description = src.description;
  return out;
}

}  // namespace rwkv::cli
