// `rwkv bench generate SOURCE`: RNN-mode generation (rwkv/rnn.h) after contexts of given
// lengths. For each length the context is prefilled in parallel mode, `chunk` tokens at a time
// (each chunk continues the carried state), then single tokens are generated one rnn_step at a
// time. Printed: prefill tokens/s, generation tokens/s (median, min, max per token after
// warm-up), the carried state's size and the process's resident memory. RWKV's state does not
// grow with the context (RECIPE §3), which the state column shows and the RSS column checks.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "rwkv/init.h"
#include "rwkv/model.h"
#include "rwkv/rnn.h"
#include "trainer/bench.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics.h"
#include "trainer/run_config.h"
#include "trainer/weight_files.h"

namespace rwkv::bench {
namespace fs = std::filesystem;
namespace {

struct Loaded {
  ModelConfig config;
  std::map<std::string, torch::Tensor> weights;  // empty: initialise randomly
  std::string what;
};

Loaded load_source(const std::string& source) {
  const fs::path p = source;
  if (!fs::exists(p)) throw std::invalid_argument("bench generate: " + source + " does not exist");
  const std::string ext = p.extension().string();
  if (ext == ".yaml" || ext == ".yml") return {model_config_from_file(source), {}, "random weights (init rules)"};
  if (fs::is_directory(p) && !fs::exists(p / "config.json")) {  // a checkpoint of `rwkv train`
    const trainer::Checkpoint ck = trainer::load_checkpoint(p);
    return {trainer::parse_run_config(ck.config_yaml, (p / "config.yaml").string()).model, ck.weights,
            "training checkpoint"};
  }
  io::ModelWeights w = io::read_model_weights(p);  // .pth, .safetensors, HF folder
  Loaded out{w.config, {}, "weights file"};
  for (auto& t : w.tensors) out.weights[t.name] = t.tensor;
  return out;
}

int64_t state_bytes(const RnnState& state) {
  int64_t n = 0;
  for (const auto& l : state)
    for (const torch::Tensor& t : {l.att.prev_x, l.att.wkv.aa, l.att.wkv.bb, l.att.wkv.pp, l.ffn.prev_x})
      n += static_cast<int64_t>(t.nbytes());
  return n;
}

}  // namespace

void bench_generate(const GenerateOptions& o) {
  if (o.tokens < 1 || o.chunk < 1 || o.warmup < 0 || o.ctx.empty())
    throw std::invalid_argument("bench generate: --tokens and --chunk must be positive, --warmup non-negative");
  for (const int64_t c : o.ctx)
    if (c < 0) throw std::invalid_argument(fmt::format("bench generate: --ctx {} is negative", c));
  check_json_path(o.json);
  const torch::Device dev(o.device);
  if (dev.is_cuda() && !torch::cuda::is_available())
    throw std::invalid_argument("bench generate: --device " + o.device + " but torch sees no CUDA device");
  Loaded src = load_source(o.source);
  const ModelConfig& config = src.config;
  RWKV model(config, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  if (src.weights.empty()) {
    init_weights(model, InitOptions{});
  } else {
    torch::NoGradGuard no_grad;
    for (auto& kv : model->named_parameters()) {
      const auto it = src.weights.find(kv.key());
      if (it == src.weights.end()) throw std::runtime_error(o.source + ": no weight '" + kv.key() + "'");
      kv.value().copy_(it->second.reshape(kv.value().sizes()));
    }
  }
  src.weights.clear();  // the model holds its copy; the RSS column counts the model, not the file too
  model->eval();
  torch::NoGradGuard no_grad;
  const auto sync = [&] {
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  fmt::print("generation (RNN mode), {} ({}; L={} D={} V={}), batch 1, fp32 on {}, {} threads\n", o.source, src.what,
             config.n_layer, config.n_embd, config.vocab_size, dev.str(), at::get_num_threads());
  fmt::print("  {:>8} {:>14} {:>14} {:>10} {:>10} {:>12} {:>10}\n", "context", "prefill tok/s", "gen tok/s (med)",
             "min", "max", "state bytes", "RSS GiB");
  torch::manual_seed(0);
  const auto longs = torch::TensorOptions().dtype(torch::kLong).device(dev);
  nlohmann::json rows = nlohmann::json::array();
  for (const int64_t ctx : o.ctx) {
    RnnState state = initial_state(config, 1, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t done = 0; done < ctx; done += o.chunk) {
      const int64_t n = std::min(o.chunk, ctx - done);
      model->forward(torch::randint(config.vocab_size, {1, n}, longs), state);
    }
    sync();
    const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    torch::Tensor token = torch::randint(config.vocab_size, {1}, longs);
    const auto one_token = [&] { token = rnn_step(model, token, state).argmax(-1); };
    const Timing gen = time_runs(static_cast<int>(o.tokens), o.warmup, dev, one_token);
    const double rss = trainer::resident_memory_gib();
    const double prefill_tok_s = ctx > 0 ? static_cast<double>(ctx) / prefill_s : 0;
    fmt::print("  {:>8} {:>14.1f} {:>15.1f} {:>10.1f} {:>10.1f} {:>12} {:>10.3f}\n", ctx, prefill_tok_s,
               1e3 / gen.median_ms, 1e3 / gen.max_ms, 1e3 / gen.min_ms, state_bytes(state), rss);
    rows.push_back({{"ctx", ctx},
                    {"prefill_tokens_per_s", prefill_tok_s},
                    {"token", to_json(gen)},
                    {"tokens_per_s", 1e3 / gen.median_ms},
                    {"state_bytes", state_bytes(state)},
                    {"rss_gib", rss}});
  }
  write_json(o.json, {{"bench", "generate"},
                      {"source", o.source},
                      {"n_layer", config.n_layer}, {"n_embd", config.n_embd}, {"vocab_size", config.vocab_size},
                      {"device", dev.str()}, {"dtype", "fp32"}, {"threads", at::get_num_threads()},
                      {"chunk", o.chunk},
                      {"contexts", rows}});
}

}  // namespace rwkv::bench
