#pragma once
// `rwkv bench`: figures, not tests. Each figure is the median of several timed runs
// after untimed warm-up runs, printed with its min and max, as a table and, with --json, as one
// JSON object that scripts/bench_peers.sh combines with its peers' figures.
//   wkv       the WKV op, forward and forward+backward, against a per-timestep ATen loop
//   train     the training step of a config against the rate of its own GEMMs alone
//   generate  RNN-mode generation at given context lengths: tokens/s and memory
//   loss      the fused training loss against the unfused formulation (trainer/bench/bench_loss.h)
//   predict   not a measurement: the GPU step time the cost model expects (trainer/bench/cost_model.h)
//   memory    one rank's tensor memory per category of a training step vs `rwkv plan`'s estimate
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace rwkv::bench {

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int runs = 0;
};

// `warmup` untimed calls of fn, then `runs` timed ones; CUDA work is synchronized around each.
Timing time_runs(int runs, int warmup, const torch::Device& device, const std::function<void()>& fn);
nlohmann::json to_json(const Timing& t);
// Writes `j` to `path` (when not empty), throwing with the path when it cannot.
void write_json(const std::string& path, const nlohmann::json& j);

// `--device` of `command` ("bench wkv", ...) through trainer::resolve_device; its errors get the
// command and flag in front.
torch::Device device_flag(const std::string& value, const std::string& command);

struct WkvOptions {
  int64_t B = 8, T = 1024, C = 768;
  int runs = 5, warmup = 1;
  bool no_loop = false;  // skip the ATen loop (it is slow at long T on a GPU: one launch per op and step)
  std::string device = "cpu", dtype = "fp32", json;
};
void bench_wkv(const WkvOptions& o);

// The config's training step as `rwkv train` takes it (trainer/train/train_step.h), on random
// tokens (trainer/bench/bench_train.h).
struct TrainOptions {
  std::string config;               // a run config, or a YAML with only a `model:` section
  // Unset: the config's first stage (8 and 512 for a model-only YAML).
  std::optional<int64_t> micro_batch, ctx;
  std::optional<int64_t> segment;   // tokens per segment (train.segment_len; 0: whole samples)
  int steps = 5, warmup = 1;
  std::string device = "auto", json;  // auto: CUDA when torch sees one, else the CPU
  std::vector<std::string> sets;    // `--set section.key=value`, as `rwkv train` takes them
  // Instead of timing: the kernel census of one block at the run's micro_batch × ctx
  // (trainer/bench/op_census.h), printed and, with --json, written as the field "census".
  bool census = false;
};
void bench_train(const TrainOptions& o);

// `rwkv bench predict`: the cost model's GPU step for the run `rwkv bench train` would time with
// the same config, --micro-batch, --ctx and --set (trainer/bench/cost_model.h).
struct PredictOptions {
  std::string config;
  std::optional<int64_t> micro_batch, ctx;
  std::vector<std::string> sets;
  std::string gpu = "h200";  // known_gpu's assumed figures, then the flags below replace theirs
  std::optional<double> peak_tflops, bandwidth_gbs, launch_us;
  std::optional<int64_t> wkv_chunk;  // the WKV kernels (0: sequential); unset: the CUDA op's policy
  std::string json;
};
void bench_predict(const PredictOptions& o);
// One rank's tensor memory in a training step, by category, next to `rwkv plan`'s estimate
// (trainer/bench/bench_memory.cpp); under torchrun every rank measures itself over Gloo. CPU only.
struct MemoryOptions {
  std::string config;               // a run config, or a YAML with only a `model:` section
  std::optional<int64_t> micro_batch, ctx, segment;  // as TrainOptions
  std::optional<int64_t> zero_stage;                 // train.zero_stage (default: the config's)
  int64_t accum = 2;                // micro-batches per rank (the first creates the gradients)
  std::vector<std::string> sets;    // `--set section.key=value`
  std::string json;
};
void bench_memory(const MemoryOptions& o);

struct GenerateOptions {
  std::string source;  // a YAML config (random weights), a weights file / HF folder, or a checkpoint dir
  std::vector<int64_t> ctx = {1024, 8192, 65536};
  int64_t tokens = 32;       // generated (timed) tokens after each context
  int64_t chunk = 1024;      // prefill chunk: parallel mode over this many tokens at a time
  int warmup = 2;            // untimed generated tokens first
  std::string device = "cpu", json;
};
void bench_generate(const GenerateOptions& o);

}  // namespace rwkv::bench
