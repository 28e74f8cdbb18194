#pragma once
// A briefly trained model for the export, parity and inference tests: `rwkv prep` of a small
// byte-tokenized corpus, then `rwkv train` of an L=2, D=32, V=256 model at ctx_len 16
// (30 steps). Built once per test process (a few seconds) and shared.
#include <filesystem>

namespace rwkv::test {

struct TinyRun {
  std::filesystem::path run_dir;      // config.yaml, metrics.jsonl, checkpoints/
  std::filesystem::path checkpoint;   // the final step-N directory
  std::filesystem::path tokens;       // the binidx prefix it trained on
  std::filesystem::path text;         // the corpus (one .txt file)
};

const TinyRun& tiny_trained_run();

}  // namespace rwkv::test
