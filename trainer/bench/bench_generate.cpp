// `rwkv bench generate SOURCE`: RNN-mode generation (rwkv/rnn.h) after contexts of given
// lengths. For each length the context is prefilled in parallel mode, `chunk` tokens at a time
// (each chunk continues the carried state), then single tokens are generated one rnn_step at a
// time. Printed: prefill tokens/s, generation tokens/s (median, min, max per token after
// warm-up), the carried state's size and the process's resident memory. RWKV's state does not
// grow with the context (kernels/README.md "WKV"), which the state column shows and the RSS column checks.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "common/log/log.h"
#include "rwkv/init.h"
#include "rwkv/model.h"
#include "rwkv/rnn.h"
#include "trainer/bench/bench.h"
#include "trainer/inference/generate.h"
#include "trainer/train/metrics.h"
#include "trainer/checkpoint/model_source.h"
#include "trainer/config/model_config_yaml.h"

namespace rwkv::bench {
namespace fs = std::filesystem;
namespace {

// The model to time: random weights (init rules) for a config YAML, otherwise whatever
// read_model_source accepts (a checkpoint, .pth, .safetensors or HF folder).
RWKV load_model(const std::string& source, const torch::Device& dev, std::string& what) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const fs::path p = source;
  if (!fs::exists(p)) throw std::invalid_argument("bench generate: " + source + " does not exist");
  if (p.extension() == ".yaml" || p.extension() == ".yml") {
    RWKV model(model_config_from_file(source), options);
    init_weights(model, InitOptions{});
    model->eval();
    what = "random weights (init rules)";
    return model;
  }
  const io::ModelSource src = io::read_model_source(p, [](const std::string& w) { logging::warn(w); });
  what = src.description;
  return io::build_model(src.weights, options);  // the file's copy is freed on return: RSS counts the model
}

}  // namespace

void bench_generate(const GenerateOptions& o) {
  if (o.tokens < 1 || o.chunk < 1 || o.warmup < 0 || o.ctx.empty())
    throw std::invalid_argument("bench generate: --tokens and --chunk must be positive, --warmup non-negative");
  for (const int64_t c : o.ctx)
    if (c < 0) throw std::invalid_argument(fmt::format("bench generate: --ctx {} is negative", c));
  const torch::Device dev = device_flag(o.device, "bench generate");
  std::string what;
  RWKV model = load_model(o.source, dev, what);
  const ModelConfig& config = model->config();
  torch::NoGradGuard no_grad;
  const auto sync = [&] {
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  fmt::print("generation (RNN mode), {} ({}; L={} D={} V={}), batch 1, fp32 on {}, {} threads\n", o.source, what,
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
    // rwkv generate's prompt pass (rwkv/rnn.h prefill_continue), one chunk after another.
    for (int64_t done = 0; done < ctx; done += o.chunk) {
      const int64_t n = std::min(o.chunk, ctx - done);
      prefill_continue(model, torch::randint(config.vocab_size, {1, n}, longs), state);
    }
    sync();
    const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    torch::Tensor token = torch::randint(config.vocab_size, {1}, longs);
    const auto one_token = [&] { token = rnn_step(model, token, state).argmax(-1); };
    const Timing gen = time_runs(static_cast<int>(o.tokens), o.warmup, dev, one_token);
    const double rss = trainer::resident_memory_gib();
    const double prefill_tok_s = ctx > 0 ? static_cast<double>(ctx) / prefill_s : 0;
    fmt::print("  {:>8} {:>14.1f} {:>15.1f} {:>10.1f} {:>10.1f} {:>12} {:>10.3f}\n", ctx, prefill_tok_s,
               1e3 / gen.median_ms, 1e3 / gen.max_ms, 1e3 / gen.min_ms, trainer::state_bytes(state), rss);
    rows.push_back({{"ctx", ctx},
                    {"prefill_tokens_per_s", prefill_tok_s},
                    {"token", to_json(gen)},
                    {"tokens_per_s", 1e3 / gen.median_ms},
                    {"state_bytes", trainer::state_bytes(state)},
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
