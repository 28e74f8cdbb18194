#pragma once
// What `rwkv generate` and `rwkv eval` both start from: a model (trainer/checkpoint/model_source.h) on a
// device, in eval mode, and the tokenizer that goes with it.
#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "rwkv/model.h"

namespace rwkv::cli {

struct InferenceSetup {
  RWKV model{nullptr};
  std::unique_ptr<data::Tokenizer> tokenizer;
  int64_t ctx_len = 0;      // a checkpoint's training ctx_len; 0 for weight files
  std::string description;  // what was loaded
};

// `source`: see read_model_source. `tokenizer`: "byte", a tokenizer.json, or empty for the
// checkpoint's own (byte for weight files). `device`: as trainer/config/device.h reads it. Throws when the
// tokenizer has more ids than the model's vocabulary or cuda is asked for without a GPU.
InferenceSetup load_for_inference(const std::string& source, const std::string& tokenizer, const std::string& device);

}  // namespace rwkv::cli
