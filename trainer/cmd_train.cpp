// `rwkv train CONFIG [--resume] [--set section.key=value]...`: validates the config, builds the
// RWKV model and the data, runs trainer/train_loop.h, then prints a generated sample when
// sample.length > 0. SIGINT/SIGTERM checkpoint the last complete step and exit cleanly (status 0);
// a second signal kills at once.
#include <fmt/format.h>
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "rwkv/init.h"
#include "rwkv/model.h"
#include "rwkv/rnn.h"
#include "rwkv/yaml_section.h"
#include "trainer/commands.h"
#include "trainer/dataset_source.h"
#include "trainer/flops_peak.h"
#include "trainer/train_loop.h"

namespace rwkv::cli {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int sig) {
  g_stop.store(true);
  std::signal(sig, SIG_DFL);
}

// Temperature sampling (greedy at 0) through RNN mode, from the prompt's prefill.
std::string generate(RWKV& model, const data::Tokenizer& tok, const trainer::SampleConfig& s,
                     const torch::Device& device) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<int32_t> ids = tok.encode(s.prompt);
  if (ids.empty()) ids.push_back(tok.eod_id());
  std::vector<int64_t> prompt(ids.begin(), ids.end());
  auto pre = prefill(model, torch::tensor(prompt, torch::kLong).unsqueeze(0).to(device));
  torch::Tensor logits = pre.logits.to(torch::kFloat32);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < s.length; ++i) {
    torch::Tensor next = s.temperature == 0
                             ? logits.argmax(-1)
                             : torch::multinomial(torch::softmax(logits / s.temperature, -1), 1).squeeze(-1);
    out.push_back(static_cast<int32_t>(next.item<int64_t>()));
    logits = rnn_step(model, next, pre.state).to(torch::kFloat32);
  }
  return s.prompt + tok.decode(out);
}

int train_main(const std::string& config_path, bool resume, const std::vector<std::string>& sets) {
  std::vector<trainer::Override> overrides;
  for (const auto& s : sets) overrides.push_back(trainer::parse_override(s));
  if (resume) overrides.push_back({"checkpoint.resume", "auto"});
  trainer::RunConfig cfg = trainer::load_run_config(config_path, overrides);
  if (cfg.train.threads > 0) torch::set_num_threads(static_cast<int>(cfg.train.threads));
  const torch::Device device = trainer::resolve_device(cfg);
  fmt::print("effective config (hash {}):\n{}", cfg.hash(), cfg.to_yaml());

  std::shared_ptr<const data::TokenDataset> dataset = data::open_token_dataset(cfg.data.path);
  fmt::print("data: {} ({} tokens)\n", dataset->describe(), dataset->size());
  const auto tokenizer = data::load_tokenizer(cfg.data.tokenizer);
  if (tokenizer->vocab_size() > cfg.model.vocab_size)
    throw ConfigError(fmt::format("{}: model.vocab_size {} is smaller than the tokenizer's {} ids", cfg.file,
                                  cfg.model.vocab_size, tokenizer->vocab_size()));

  RWKV model(cfg.model, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  init_weights(model, InitOptions{.seed = cfg.train.seed, .emb_scale = cfg.optimizer.lr_init});
  fmt::print("model: {} parameters, {:.3e} forward FLOPs/token\n", parameter_count(*model),
             static_cast<double>(forward_flops_per_token(*model)));

  trainer::TrainEnv env;
  env.model = model.ptr();
  env.forward = [model](const torch::Tensor& tokens) mutable { return model->forward(tokens); };
  env.data = [dataset, &cfg](const trainer::Stage& stage) {
    return trainer::make_dataset_source(dataset, cfg, stage);
  };
  env.forward_flops_per_token = static_cast<double>(forward_flops_per_token(*model));
  if (cfg.log.peak_auto) {
    // The config (and its hash) keeps `auto`; the loop reads the number found here.
    const trainer::Stage& first = cfg.stages.front();
    const auto peak = trainer::auto_peak(cfg.model, first.micro_batch * first.ctx_len, device);
    fmt::print("MFU peak (log.peak_tflops: auto): {:.4g} TFLOP/s, {}\n", peak.tflops, peak.source);
    cfg.log.peak_tflops = peak.tflops;
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  trainer::TrainControls controls;
  controls.stop = &g_stop;
  const auto report = trainer::run_training(cfg, env, controls);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);

  if (report.exit != trainer::TrainExit::stopped && cfg.sample.length > 0) {
    fmt::print("--- sample (temperature {}) ---\n{}\n---\n", cfg.sample.temperature,
               generate(model, *tokenizer, cfg.sample, device));
  }
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train (or resume) a run from a YAML config");
  static std::string config;
  static bool resume = false;
  static std::vector<std::string> sets;
  cmd->add_option("config", config, "run config YAML")->required();
  cmd->add_flag("--resume", resume, "continue from the newest complete checkpoint (= --set checkpoint.resume=auto)");
  cmd->add_option("--set", sets, "override a config field before validation: section.key=value")->allow_extra_args(false);
  cmd->callback([] { train_main(config, resume, sets); });
}

}  // namespace rwkv::cli
