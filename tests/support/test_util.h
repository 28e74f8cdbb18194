#pragma once
// Shared helpers for the Catch2 tests: paths of this checkout and the venv, subprocesses,
// temporary directories, and the [cuda] skip.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "rwkv/named_tensors.h"

namespace rwkv::test {

// The tensor called `name` in `tensors` (a checkpoint's weights or moments); fails the test
// when there is none.
inline const torch::Tensor& tensor_named(const NamedTensors& tensors, const std::string& name) {
  const torch::Tensor* t = find_tensor(tensors, name);
  INFO(name);
  REQUIRE(t != nullptr);
  return *t;
}

// RWKV_TEST_SOURCE_DIR / RWKV_TEST_BINARY_DIR override the paths compiled in: the GPU bundle
// (scripts/gpu-bundle/run.sh) runs this binary on another machine, with bin/rwkv beside it.
inline std::filesystem::path env_or(const char* name, const char* compiled) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::filesystem::path(v) : std::filesystem::path(compiled);
}
inline std::filesystem::path source_dir() { return env_or("RWKV_TEST_SOURCE_DIR", RWKV_SOURCE_DIR); }
inline std::filesystem::path binary_dir() { return env_or("RWKV_TEST_BINARY_DIR", RWKV_BINARY_DIR); }
// The `rwkv` CLI built beside the tests.
inline std::filesystem::path rwkv_binary() { return binary_dir() / "bin" / "rwkv"; }
// The venv's python, for interop checks against transformers / tokenizers / the rwkv package.
inline std::string python() { return RWKV_PYTHON; }
// ../shared/data next to the checkout (the 20B tokenizer lives there, never in the repo).
inline std::filesystem::path shared_data_dir() { return source_dir().parent_path() / "shared" / "data"; }

// A TCP port on the loopback interface that is free right now (bind to port 0, read it back).
int free_port();

// The whole content of a file ("" when it cannot be read).
std::string slurp(const std::filesystem::path& path);

// Run a shell command, capture stdout+stderr; returns the exit status.
int run(const std::string& command, std::string* output = nullptr);

// `text` as <dir>/text/a.txt, byte-tokenized by the `rwkv` binary (`rwkv prep`) into the binidx
// prefix <dir>/tok, which it returns; fails the test when prep fails.
std::filesystem::path prep_byte_corpus(const std::filesystem::path& dir, const std::string& text);

// The CLI tests' tiny run: 800 lines of pangram as a byte corpus at <dir>/tok (prep_byte_corpus)
// and <dir>/run.yaml, a 1-layer D=32 model on it whose run goes to `run_dir`, a checkpoint every
// `checkpoint_every` steps, a log line every step, no sample; `train_extra` (", key: value" …)
// is appended to the train section. Returns the config's path.
std::string write_tiny_run(const std::filesystem::path& dir, const std::filesystem::path& run_dir,
                           int checkpoint_every, const std::string& train_extra = "");

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "rwkv-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace rwkv::test

// In a [cuda] test: skip (with a visible warning) where torch sees no GPU.
#define RWKV_REQUIRE_CUDA_OR_SKIP()                                 \
  do {                                                              \
    if (!torch::cuda::is_available()) {                             \
      WARN("skipped: no CUDA device visible to torch");             \
      return;                                                       \
    }                                                               \
  } while (0)
