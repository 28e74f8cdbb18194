#pragma once
// The shape of an RWKV-4 model (rwkv/README.md "Shapes"). Plain data: the YAML `model:` section is read into
// it by model_config_from_yaml (rwkv/model_config.cpp).
#include <cstdint>
#include <string>

namespace YAML { class Node; }

namespace rwkv {

struct ModelConfig {
  int64_t n_layer = 0;      // L
  int64_t n_embd = 0;       // D
  int64_t vocab_size = 0;   // V (50277 for the Pile's 20B tokenizer, no padding)
  int64_t dim_att = 0;      // A; 0 means D
  int64_t dim_ffn = 0;      // F; 0 means 4D

  int64_t att() const { return dim_att > 0 ? dim_att : n_embd; }
  int64_t ffn() const { return dim_ffn > 0 ? dim_ffn : 4 * n_embd; }
};

// Reads and validates the `model:` mapping (unknown keys, types, positivity); `file` labels errors.
ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& file);

// Reads only the `model:` section of a YAML config file (`rwkv info`, `rwkv plan`: commands that
// need the shape, not a whole run); errors name the file and line.
ModelConfig model_config_from_file(const std::string& path);

}  // namespace rwkv
