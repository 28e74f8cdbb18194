#pragma once
// Shared pieces of the trainer tests: a small run config, a synthetic token source of known
// entropy, and the TrainEnv that trains a model on it.
#include <torch/torch.h>

#include <random>
#include <string>

#include "trainer/train/train_loop.h"

namespace rwkv::test::trainer {

using namespace rwkv::trainer;

// A first-order Markov source over V tokens: next = (prev + 1 + r) mod V with r uniform on
// [0, branches). Each transition carries exactly ln(branches) nats, the floor of the
// cross-entropy of any model that sees the previous token. Sample i is a pure function of i.
class MarkovSource : public BatchSource {
 public:
  MarkovSource(int64_t vocab, int64_t branches, int64_t ctx_len) : V_(vocab), m_(branches), T_(ctx_len) {}
  torch::Tensor samples(int64_t first, int64_t count) override {
    auto out = torch::empty({count, T_ + 1}, torch::kLong);
    auto a = out.accessor<int64_t, 2>();
    for (int64_t s = 0; s < count; ++s) {
      std::mt19937_64 rng(static_cast<uint64_t>(first + s) * 0x9E3779B97F4A7C15ull + 1);
      int64_t tok = static_cast<int64_t>(rng() % static_cast<uint64_t>(V_));
      for (int64_t t = 0; t <= T_; ++t) {
        a[s][t] = tok;
        tok = (tok + 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(m_))) % V_;
      }
    }
    return out;
  }
  double entropy_nats() const { return std::log(static_cast<double>(m_)); }

 private:
  int64_t V_, m_, T_;
};

// Model V = 16, 40 samples per mini-epoch, 2 mini-epochs of 10 steps of 4 samples of 8 tokens.
inline std::string config_yaml(const std::string& run_dir) {
  return R"(model: {n_layer: 1, n_embd: 32, vocab_size: 16}
data: {path: synthetic, ctx_len: 8}
train:
  run_dir: ")" + run_dir + R"("
  micro_batch: 4
  epoch_samples: 40
  epoch_count: 2
  seed: 1
  device: cpu
optimizer: {lr_init: 1.0e-2, lr_final: 1.0e-3, warmup_steps: 2}
log: {every_steps: 1}
checkpoint: {every_steps: 100, keep: 2}
)";
}

// The model the loop trains in these tests, built fresh (a new "process") from the config's seed.
TrainEnv make_env(const RunConfig& config, int64_t branches = 3);

// The real RWKV of config.model on the config's device (run_device: train.device), initialised as
// `rwkv train` does (rwkv/init.h, the config's seed, emb scale lr_init; train.activation_checkpointing
// as `rwkv train`), trained on the MarkovSource; init_from .pth files are read as `rwkv train`
// reads them (trainer/checkpoint/init_weights_file.h).
TrainEnv make_rwkv_env(const RunConfig& config, int64_t branches = 3);

// Runs the enclosing scope on one intra-op thread. The tiny models here gain nothing from more,
// and on a loaded 2-core CI machine OpenMP's spinning threads make them ~30x slower.
class OneThread {
 public:
  OneThread() : previous_(torch::get_num_threads()) { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(previous_); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int previous_;
};

inline TrainControls quiet() {
  TrainControls c;
  c.print = [](const std::string&) {};
  return c;
}

}  // namespace rwkv::test::trainer
