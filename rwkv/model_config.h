#pragma once
// The shape of an RWKV-4 model (rwkv/README.md "Shapes"). Plain data: the `model:` section of a
// config file is read into it by trainer/config/model_config_yaml.h, so this library needs no YAML.
#include <cstdint>

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

}  // namespace rwkv
