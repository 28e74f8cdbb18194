#pragma once
// The small run config both config test files edit (tests/trainer/config/test_run_config.cpp,
// test_config_bad_input.cpp), and the two helpers they edit it with. Line numbers in messages
// count from 1 in kBase.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "trainer/config/run_config.h"

namespace rwkv::trainer::test {

inline const std::string kBase = R"(model:
  n_layer: 2
  n_embd: 64
  vocab_size: 256
data:
  path: corpus
  sampler: magic_prime
  ctx_len: 128
train:
  run_dir: runs/t
  micro_batch: 8
  grad_accum: 2
  epoch_count: 10
optimizer:
  lr_init: 6.0e-4
  lr_final: 1.0e-5
  constant_epochs: 4
  warmup_steps: 50
)";

// kBase with the first occurrence of `from` replaced by `to`.
inline std::string with(const std::string& from, const std::string& to) {
  std::string s = kBase;
  const auto at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

// The ConfigError text parse_run_config gives `yaml`, or "(no error)".
inline std::string error_of(const std::string& yaml, const std::vector<Override>& o = {}) {
  try {
    parse_run_config(yaml, "cfg.yaml", o);
  } catch (const rwkv::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace rwkv::trainer::test
