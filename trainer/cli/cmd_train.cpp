// `rwkv train CONFIG [--resume | --restart] [--set section.key=value]...`: validates the config, builds the
// RWKV model (trainer/train/trained_model.h) and the data, runs trainer/train/train_loop.h, then prints a generated sample when
// sample.length > 0. With a validation section the held-out data is opened (and checked) before the model is
// built (trainer/train/validation.h). SIGINT/SIGTERM checkpoint the last complete step and exit cleanly (status 0);
// a second signal kills at once. Started by torchrun, Slurm or mpirun (trainer/dist/dist_env.h), each
// process is one rank on GPU local_rank (or the CPU), joined over NCCL (or Gloo). All it says goes
// through the process log (common/log/log.h) at log.level: to the console (stderr) from rank 0 (log.console),
// and from every rank into its log file once the run directory is claimed (trainer/README.md "Logs").
#include <c10/core/DeviceGuard.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "common/log/log.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "rwkv/model.h"
#include "trainer/config/yaml_section.h"
#include "trainer/cli/commands.h"
#include "trainer/dist/communicator.h"
#include "trainer/train/dataset_source.h"
#include "trainer/dist/dist_env.h"
#include "trainer/inference/generate.h"
#include "trainer/bench/flops_peak.h"
#include "trainer/checkpoint/init_weights_file.h"
#include "trainer/train/memory_check.h"
#include "trainer/train/train_loop.h"
#include "trainer/train/trained_model.h"
#include "trainer/train/validation.h"

namespace rwkv::cli {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int sig) {
  g_stop.store(true);
  std::signal(sig, SIG_DFL);
}

// The closing sample: temperature sampling (greedy at 0) through RNN mode (trainer/inference/generate.h).
std::string sample_text(RWKV& model, const data::Tokenizer& tok, const trainer::SampleConfig& s, uint64_t seed) {
  std::vector<int32_t> ids = tok.encode(s.prompt);
  if (ids.empty()) ids.push_back(tok.eod_id());
  const auto gen = trainer::generate(model, std::vector<int64_t>(ids.begin(), ids.end()), s.length,
                                     {.temperature = s.temperature, .seed = seed});
  return s.prompt + tok.decode(std::vector<int32_t>(gen.tokens.begin(), gen.tokens.end()));
}

int train_main(const std::string& config_path, bool resume, bool restart, const std::vector<std::string>& sets) {
  std::vector<trainer::Override> overrides;
  for (const auto& s : sets) overrides.push_back(trainer::parse_override(s));
  if (resume) overrides.push_back({"checkpoint.resume", "auto"});
  if (restart) overrides.push_back({"checkpoint.resume", "restart"});
  trainer::RunConfig cfg = trainer::load_run_config(config_path, overrides);
  if (cfg.train.threads > 0) torch::set_num_threads(static_cast<int>(cfg.train.threads));
  const DistEnv dist = dist_env_from_process();
  const bool root = dist.rank == 0;
  logging::configure({.level = cfg.log.level,
                      .rank = dist.rank,
                      .world_size = dist.world_size,
                      .console = cfg.log.console == trainer::LogConsole::all ||
                                 (cfg.log.console == trainer::LogConsole::rank0 && root)});
  const torch::Device device = trainer::run_device(cfg, dist.local_rank);
  // The WKV kernels and NCCL work on the current device: this rank's GPU.
  const c10::DeviceGuard device_guard(device);
  std::unique_ptr<Communicator> comm;
  if (dist.distributed())
    comm = std::make_unique<Communicator>(
        dist, device, std::chrono::milliseconds(static_cast<int64_t>(cfg.train.dist_timeout_s * 1000)));
  if (root) {
    for (const auto& w : cfg.warnings) logging::warn(w);
    const std::string yaml = cfg.to_yaml();
    logging::info("effective config:\n" + yaml.substr(0, yaml.size() - 1));
    if (comm) logging::info(fmt::format("ranks: {} ({}, {})", dist.world_size, dist.launcher, device.is_cuda() ? "NCCL" : "Gloo"));
  }
  if (comm) logging::debug(fmt::format("rank {} of {} (local rank {}) on {}", dist.rank, dist.world_size, dist.local_rank, device.str()));

  std::shared_ptr<const data::TokenDataset> dataset = data::open_token_dataset(cfg.data.path);
  if (root) logging::info(fmt::format("data: {} ({} tokens)", dataset->describe(), dataset->size()));
  data::check_token_ids(*dataset, cfg.model.vocab_size, cfg.file + ": model.vocab_size");
  const auto tokenizer = data::load_tokenizer(cfg.data.tokenizer);
  if (tokenizer->vocab_size() > cfg.model.vocab_size)
    throw ConfigError(fmt::format("{}: model.vocab_size {} is smaller than the tokenizer's {} ids", cfg.file,
                                  cfg.model.vocab_size, tokenizer->vocab_size()));

  std::optional<trainer::Validation> validation;
  if (cfg.validation.enabled()) {
    validation.emplace(trainer::open_validation_data(cfg, dataset, *tokenizer),
                       trainer::token_byte_lengths(*tokenizer, cfg.model.vocab_size), cfg.validation.batch);
    if (root) logging::info("validation: " + validation->data().describe());
  }

  // After the data is found (a missing file is the more basic error), before the model is built
  // and anything is written.
  trainer::check_run_fits(cfg, device, dist.world_size);
  trainer::TrainedModel trained = trainer::build_trained_model(cfg, device);
  RWKV model = trained.model;
  if (root)
    logging::info(fmt::format("model: {} parameters, {:.3e} forward FLOPs/token", parameter_count(*model),
                              trained.forward_flops_per_token));

  trainer::TrainEnv env;
  env.model = model.ptr();
  env.forward = trained.forward;
  env.data = [dataset, &cfg](const trainer::Stage& stage) {
    return trainer::make_dataset_source(dataset, cfg, stage);
  };
  env.forward_flops_per_token = trained.forward_flops_per_token;
  env.read_weights = [&cfg](const std::string& path) {
    return trainer::read_init_weights(path, cfg.model, [](const std::string& w) { logging::warn(w); });
  };
  env.comm = comm.get();
  if (validation)
    env.validate = [&validation, model](int64_t ctx_len, Communicator& c) mutable {
      return validation->run(model, ctx_len, c);
    };
  if (cfg.log.peak_auto && root) {
    // The config (and its hash) keeps `auto`; the loop reads the number found here. Only rank 0
    // logs MFU, so only it measures (ranks measuring at once would slow each other's GEMMs).
    const trainer::Stage& first = cfg.stages.front();
    const auto peak = trainer::auto_peak(cfg.model, first.micro_batch * first.ctx_len, device);
    logging::info(fmt::format("MFU peak (log.peak_tflops: auto): {:.4g} TFLOP/s, {}", peak.tflops, peak.source));
    cfg.log.peak_tflops = peak.tflops;
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  trainer::TrainControls controls;
  controls.stop = &g_stop;
  controls.log_file = true;
  const auto report = trainer::run_training(cfg, env, controls);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);

  if (root && report.exit != trainer::TrainExit::stopped && cfg.sample.length > 0) {
    logging::info(fmt::format("--- sample (temperature {}) ---\n{}\n---", cfg.sample.temperature,
                              sample_text(model, *tokenizer, cfg.sample, cfg.train.seed)));
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
  static bool restart = false;
  auto* resume_flag =
      cmd->add_flag("--resume", resume, "continue from the newest complete checkpoint (= --set checkpoint.resume=auto)");
  cmd->add_flag("--restart", restart,
                "start at step 0; an earlier run's checkpoints and metrics.jsonl move to <run_dir>/previous-N/ "
                "(= --set checkpoint.resume=restart)")
      ->excludes(resume_flag);
  cmd->add_option("--set", sets, "override a config field before validation: section.key=value")->allow_extra_args(false);
  cmd->callback([] { train_main(config, resume, restart, sets); });
}

}  // namespace rwkv::cli
