#include "trainer/train/train_loop.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "common/log/log.h"
#include "data/sampler.h"
#include "trainer/config/device.h"
#include "trainer/config/yaml_section.h"
#include "trainer/dist/communicator.h"
#include "common/durable_file.h"
#include "trainer/train/checkpointer.h"
#include "trainer/train/metrics.h"
#include "trainer/train/metrics_interval.h"
#include "trainer/train/tensorboard_log.h"
#include "trainer/train/run_directory.h"
#include "trainer/train/train_step.h"
#include "trainer/train/validation.h"

namespace rwkv::trainer {
namespace fs = std::filesystem;
namespace {

// Every rank ends up with the step of the checkpoint it resumes from (-1: none). A rank that
// found another one than rank 0 (checkpoint.dir not shared, a write still in flight) fails the run
// on all ranks alike instead of training from different states.
void agree_on_resume_step(Communicator& comm, int64_t mine, const torch::Device& device, const std::string& dir) {
  if (!comm.grouped()) return;
  auto root = torch::full({1}, mine, torch::TensorOptions().dtype(torch::kLong).device(device));
  comm.broadcast(root);
  const int64_t root_step = root.item<int64_t>();
  if (sum_over_ranks(comm, mine != root_step ? 1 : 0, device) > 0)
    throw std::runtime_error(fmt::format(
        "{}: the ranks found different newest checkpoints (rank {}: step {}, rank 0: step {}); every rank must see "
        "the same checkpoint.dir",
        dir, comm.rank(), mine, root_step));
}

}  // namespace

int64_t micro_batches_per_rank(const RunConfig& c, size_t index, int world_size) {
  const Stage& st = c.stages.at(index);
  if (st.grad_accum % world_size != 0)
    throw ConfigError(fmt::format(
        "{}: {}grad_accum: {} micro-batches per step cannot be shared by {} ranks; the global batch "
        "micro_batch*grad_accum = {} is the same on any number of ranks and each rank runs grad_accum/ranks "
        "micro-batches, so grad_accum must be a multiple of the number of ranks",
        c.file, c.explicit_stages ? fmt::format("stage {}: ", index) : "train.", st.grad_accum, world_size,
        st.global_batch()));
  return st.grad_accum / world_size;
}

torch::Device run_device(const RunConfig& c, int local_rank) {
  const char* request = c.train.device == DeviceKind::cuda ? "cuda" : c.train.device == DeviceKind::cpu ? "cpu" : "auto";
  torch::Device device(torch::kCPU);
  try {
    device = resolve_device(request, local_rank);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(c.file + ": train.device: " + e.what());
  }
  const bool cuda = device.is_cuda();
  if (cuda && c.model.n_embd % 32 != 0)
    throw ConfigError(fmt::format("{}: train.device: cuda needs model.n_embd to be a multiple of 32, got {}",
                                  c.file, c.model.n_embd));
  // Two ranks on one GPU are refused by NCCL itself ("Duplicate GPU").
  return device;
}

namespace {

using Sink = std::function<void(const std::string&)>;

// What the run says: by default every rank says it into the process log (common/log/log.h),
// whose console hears rank 0 and whose files each rank's own; a test's sinks hear rank 0 alone
// (the other ranks would repeat it).
struct Voice {
  Sink print, warn;
};

Voice voice_of(bool root, const TrainControls& controls) {
  const Sink silent = [](const std::string&) {};
  const auto sink = [&](const Sink& given, logging::Level level) {
    if (given) return root ? given : silent;
    return Sink([level](const std::string& s) { logging::write(level, s); });
  };
  return {sink(controls.print, logging::Level::info), sink(controls.warn, logging::Level::warn)};
}

// state.json passed its hash, but a hand-edited (or forged) one must still describe a position
// this config can continue from.
void check_progress(const RunConfig& cfg, const fs::path& path, const TrainProgress& p) {
  const auto stages = static_cast<int64_t>(cfg.stages.size());
  const auto fail = [&](const std::string& what) {
    return std::runtime_error(fmt::format("checkpoint {}: state.json: {}; not resumable", path.string(), what));
  };
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"step", p.step}, {"stage", p.stage},
                                {"stage_step", p.stage_step}, {"stage_samples", p.stage_samples},
                                {"adam_steps", p.adam_steps}, {"skipped_total", p.skipped_total},
                                {"skipped_in_row", p.skipped_in_row}})
    if (v < 0) throw fail(fmt::format("{} is {}, expected >= 0", name, v));
  if (!std::isfinite(p.tokens) || p.tokens < 0) throw fail(fmt::format("tokens is {}, expected >= 0", p.tokens));
  if (p.stage > stages) throw fail(fmt::format("stage {} but the config has {} stage(s)", p.stage, stages));
  if (p.stage < stages && p.stage_step > cfg.stages[static_cast<size_t>(p.stage)].steps)
    throw fail(fmt::format("stage_step {} is past the {} steps of stage {}", p.stage_step,
                           cfg.stages[static_cast<size_t>(p.stage)].steps, p.stage));
  if (p.stage_step > p.step || p.adam_steps > p.step || p.skipped_in_row > p.skipped_total ||
      p.skipped_total > p.step)
    throw fail(fmt::format("inconsistent counters (step {}, stage_step {}, adam_steps {}, skipped {} / {} in a row)",
                           p.step, p.stage_step, p.adam_steps, p.skipped_total, p.skipped_in_row));
}

// Every rank reads the weights whole and, of the Adam moments, only the slices of its own shard.
void resume_from(const RunConfig& cfg, CheckpointReader& ck, TrainStep& step, const Communicator& comm,
                 TrainProgress& progress, const Voice& voice) {
  const fs::path path = ck.path();
  check_progress(cfg, path, ck.progress());
  const RunConfig saved = parse_run_config(ck.config_yaml(), (path / "config.yaml").string());
  const std::string change = unsafe_resume_change(saved, cfg);
  if (!change.empty())
    throw ConfigError(fmt::format("{}: cannot resume from {}: the config changed in a field that alters the run: {} "
                                  "(start a new run_dir, or pass --restart to move this run's checkpoints aside and start over)",
                                  cfg.file, path.string(), change));
  load_weights(step.params(), ck.weights(), path.string());
  const ParallelOptimizer::SliceReader read = [&](const std::string& key, c10::IntArrayRef shape, int64_t offset,
                                                  int64_t length) { return ck.read_slice(key, shape, offset, length); };
  step.optimizer().load_masters(read);
  step.optimizer().load_state(read, ck.progress().adam_steps);
  torch::Tensor cpu_rng;
  std::vector<torch::Tensor> cuda_rng;
  ck.rng(comm.rank(), cpu_rng, cuda_rng);
  restore_rng(cpu_rng, cuda_rng);
  progress = ck.progress();
  voice.print(fmt::format("resumed from {} (step {}, stage {}, stage step {})", path.string(), progress.step,
                          progress.stage, progress.stage_step));
}

void init_from(const RunConfig& cfg, TrainEnv& env, TrainStep& step, const Voice& voice) {
  const fs::path from = cfg.checkpoint.init_from;
  NamedTensors weights;
  if (env.read_weights) {
    weights = env.read_weights(from.string());
  } else if (fs::is_directory(from)) {
    weights = load_checkpoint(from, CheckpointParts::weights).weights;
  } else {
    throw ConfigError(cfg.file + ": checkpoint.init_from: '" + from.string() + "' is not a checkpoint directory");
  }
  load_weights(step.params(), weights, from.string());  // checks every name and shape first
  step.optimizer().load_masters([&](const std::string& name, c10::IntArrayRef, int64_t offset, int64_t length) {
    return find_tensor(weights, name)->to(torch::kFloat32).reshape({-1}).narrow(0, offset, length);
  });
  voice.print("initial weights from " + from.string());
}

// Resume from the newest complete checkpoint (when the config change is safe), or start from
// checkpoint.init_from's weights, or from the caller's initialisation (which every rank took from
// rank 0 when the TrainStep was built); every rank reads the same files. Returns whether the run
// resumed.
bool resume_or_init(const RunConfig& cfg, TrainEnv& env, TrainStep& step, Communicator& comm,
                    const torch::Device& device, const Voice& voice, TrainProgress& progress) {
  std::optional<CheckpointReader> latest;
  if (cfg.checkpoint.resume == ResumeMode::auto_) latest = open_latest_checkpoint(cfg.checkpoint.dir, voice.warn);
  agree_on_resume_step(comm, latest ? latest->progress().step : -1, device, cfg.checkpoint.dir);
  if (!latest)
    check_fresh_start(cfg, cfg.checkpoint.resume == ResumeMode::auto_
                               ? "no checkpoint to resume from loads (see the warnings above)"
                               : "checkpoint.resume is never");
  if (latest) {
    resume_from(cfg, *latest, step, comm, progress, voice);
  } else if (!cfg.checkpoint.init_from.empty()) {
    init_from(cfg, env, step, voice);
  }
  return latest.has_value();
}

// Rank 0 alone locks the run directory (trainer/train/run_directory.h: only it writes files) and,
// for checkpoint.resume: restart, moves the earlier run aside; every rank learns the outcome
// before it reads a checkpoint.
std::unique_ptr<RunDirectoryLock> claim_run_directory(const RunConfig& cfg, Communicator& comm, const Voice& voice) {
  std::unique_ptr<RunDirectoryLock> lock;
  comm.on_root(
      "claim the run directory",
      [&] {
        lock = std::make_unique<RunDirectoryLock>(run_lock_dirs(cfg));
        if (cfg.checkpoint.resume == ResumeMode::restart) {
          const fs::path archive = archive_earlier_run(cfg);
          if (!archive.empty()) voice.print("restart: the earlier run's checkpoints and metrics are now in " + archive.string());
        }
        return std::string();
      },
      std::chrono::milliseconds(static_cast<int64_t>(cfg.train.dist_timeout_s * 1000)), "train.dist_timeout_s");
  return lock;
}

// Rank 0, once the start is known: an earlier run's metrics.jsonl and tb/ are kept under other
// names (fresh start); checkpoints newer than the resumed one are set aside, so nothing removes them.
void keep_earlier_records(const RunConfig& cfg, bool resumed, int64_t step, const Voice& voice) {
  if (resumed) {
    set_aside_newer_checkpoints(cfg, step, voice.warn);
  } else {
    if (const fs::path old = rotate_metrics(cfg); !old.empty())
      voice.print("metrics.jsonl of an earlier start kept as " + old.string());
    if (const fs::path old = rotate_tensorboard(cfg); !old.empty())
      voice.print("TensorBoard events of an earlier start kept in " + old.string());
  }
}

// Rank 0 prepares the run directory: creates it, writes the effective config as config.yaml and
// opens metrics.jsonl (dropping records after `resume_step`). The other ranks get no log.
std::optional<MetricsLog> prepare_run_directory(const RunConfig& cfg, bool root, int64_t resume_step, const Sink& warn) {
  std::optional<MetricsLog> log;
  if (!root) return log;
  const fs::path run_dir = cfg.train.run_dir;
  fs::create_directories(run_dir);
  write_file_durably(run_dir / "config.yaml", cfg.to_yaml());
  log.emplace(run_dir / "metrics.jsonl", resume_step, warn);
  return log;
}

// The loop's controls as the step's hooks, asked about the step after `progress`.
StepHooks step_hooks(const TrainControls& controls, const TrainProgress& progress) {
  StepHooks hooks;
  hooks.stop_before = [&controls, &progress](int64_t micro) {
    return (controls.stop && controls.stop->load()) || (controls.stop_before && controls.stop_before(progress, micro));
  };
  if (controls.after_backward)
    hooks.after_backward = [&controls, &progress](const NamedTensors& params) { controls.after_backward(progress, params); };
  return hooks;
}

// This rank's rows of micro-batch `micro` of the step after `progress` (data/sampler.h's layout).
TrainStep::Batch rank_batch(BatchSource& source, const Stage& stage, int64_t accum, const Communicator& comm,
                            const TrainProgress& progress) {
  const data::BatchLayout layout{comm.world_size(), static_cast<int>(stage.micro_batch), static_cast<int>(accum)};
  return [&source, &progress, layout, rank = comm.rank()](int64_t micro) {
    std::vector<int64_t> rows = data::micro_batch_indices(layout, 0, static_cast<int>(micro), rank);
    for (auto& g : rows) g += progress.stage_samples;
    if (logging::enabled(logging::Level::trace))
      logging::trace(fmt::format("step {} micro-batch {}: samples {} of stage {}", progress.step + 1, micro,
                                 fmt::join(rows, " "), progress.stage));
    return source.samples_at(rows);
  };
}

std::string describe_stage(const TrainProgress& p, const Stage& stage, int64_t accum, int world) {
  return fmt::format("stage {}: ctx_len {}, global batch {} ({} x {}), {} steps{}", p.stage, stage.ctx_len,
                     stage.global_batch(), stage.micro_batch, stage.grad_accum, stage.steps,
                     world > 1 ? fmt::format(", {} micro-batches on each of {} ranks", accum, world) : "");
}

// A completed (applied or skipped) step into the progress and the report's losses.
void record_step(const RunConfig& cfg, const Stage& stage, const StepResult& r, int64_t adam_steps,
                 TrainProgress& p, TrainReport& report, const Voice& voice) {
  if (r.applied) {
    p.skipped_in_row = 0;
  } else {
    ++p.skipped_total;
    ++p.skipped_in_row;
    voice.warn(fmt::format("step {}: non-finite {} (loss {}, grad norm {}); step skipped ({} in a row, limit {})",
                           p.step + 1, std::isfinite(r.loss) ? "gradient" : "loss", r.loss, r.grad_norm,
                           p.skipped_in_row, cfg.train.nan_skip_limit));
  }
  report.losses.push_back(r.applied ? r.loss : std::numeric_limits<double>::quiet_NaN());
  ++p.step;
  ++p.stage_step;
  p.stage_samples += stage.global_batch();
  p.tokens += static_cast<double>(stage.global_batch() * stage.ctx_len);
  p.adam_steps = adam_steps;
}

// The run's held-out validations (trainer/train/validation.h): every rank evaluates its share,
// rank 0 prints and logs (metrics.jsonl and TensorBoard, the same record); the time they take is left out of the training throughput.
class Validations {
 public:
  Validations(const RunConfig& cfg, TrainEnv& env, Communicator& comm, const Voice& voice,
              std::optional<MetricsLog>& log, std::optional<TensorBoardLog>& tensorboard, MetricsInterval& interval)
      : cfg_(cfg), env_(env), comm_(comm), voice_(voice), log_(log), tensorboard_(tensorboard), interval_(interval) {
    if (cfg.validation.enabled() && !env.validate)
      throw std::invalid_argument("run_training: the config has a validation section, the TrainEnv no validate");
  }

  // Every validation.every_steps steps, and at the end of a stage or of the run (`last`).
  bool due(const TrainProgress& p, bool last) const {
    const int64_t every = cfg_.validation.every_steps;
    return cfg_.validation.enabled() && (last || (every > 0 && p.step % every == 0));
  }

  void run(const TrainProgress& p, const Stage& stage) {
    const auto start = std::chrono::steady_clock::now();
    const EvalResult r = env_.validate(stage.ctx_len, comm_);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    interval_.exclude(elapsed);
    const ValidationRow row{.step = p.step, .stage = p.stage, .ctx_len = stage.ctx_len, .tokens = r.positions,
                            .loss = r.loss(), .perplexity = r.perplexity(), .bits_per_byte = r.bits_per_byte(),
                            .seconds = std::chrono::duration<double>(elapsed).count()};
    voice_.print(format_validation_line(row));
    if (log_) log_->append(row);
    if (tensorboard_) tensorboard_->append(nlohmann::json::parse(validation_json(row)));
    latest_ = {p.step, stage.ctx_len, r};
  }

  // At the end of a run with stages: validation_by_ctx.tsv in the run directory, one row per stage
  // that ran (its last validation from metrics.jsonl, which also holds those of an interrupted
  // run before a resume) with the final model's figures at its ctx_len.
  void write_table(const TrainProgress& p) {
    if (!cfg_.validation.enabled() || !cfg_.explicit_stages) return;
    std::vector<StageValidation> rows;
    std::map<int64_t, EvalResult> final_model;  // by ctx_len
    if (latest_.step == p.step) final_model[latest_.ctx_len] = latest_.result;
    int64_t stage_start = 0;
    for (size_t s = 0; s < cfg_.stages.size() && stage_start < p.step; stage_start += cfg_.stages[s++].steps) {
      const int64_t ctx = cfg_.stages[s].ctx_len;
      if (!final_model.count(ctx)) final_model[ctx] = env_.validate(ctx, comm_);  // the same calls on every rank
      rows.push_back({.stage = static_cast<int64_t>(s), .ctx_len = ctx, .final_model = final_model[ctx]});
    }
    if (!comm_.is_root()) return;
    for (const ValidationRow& v : read_validation_records(fs::path(cfg_.train.run_dir) / "metrics.jsonl"))
      for (auto& row : rows)
        if (row.stage == v.stage && (!row.last || row.last->step < v.step)) row.last = v;
    const fs::path table = fs::path(cfg_.train.run_dir) / "validation_by_ctx.tsv";
    const std::string text = validation_table(rows);
    write_file_durably(table, text);
    voice_.print(fmt::format("validation by ctx_len ({}):\n{}", table.string(), text.substr(0, text.size() - 1)));
  }

 private:
  struct Latest {
    int64_t step = -1, ctx_len = 0;
    EvalResult result;
  };
  const RunConfig& cfg_;
  TrainEnv& env_;
  Communicator& comm_;
  const Voice& voice_;
  std::optional<MetricsLog>& log_;
  std::optional<TensorBoardLog>& tensorboard_;
  MetricsInterval& interval_;
  Latest latest_;
};

}  // namespace

TrainReport run_training(const RunConfig& cfg, TrainEnv& env, const TrainControls& controls) {
  std::optional<Communicator> alone;
  Communicator& comm = env.comm ? *env.comm : alone.emplace(DistEnv{}, torch::kCPU, std::chrono::seconds(1));
  const Voice voice = voice_of(comm.is_root(), controls);
  const torch::Device device = run_device(cfg, comm.env().local_rank);
  std::vector<int64_t> rank_accum;  // every stage checked before any work
  for (size_t i = 0; i < cfg.stages.size(); ++i) rank_accum.push_back(micro_batches_per_rank(cfg, i, comm.world_size()));
  TrainStep step(cfg, named_parameters(*env.model), env.forward, comm, device);

  TrainReport report;
  TrainProgress& progress = report.progress;
  check_run_paths(cfg);
  const std::unique_ptr<RunDirectoryLock> lock = claim_run_directory(cfg, comm, voice);
  if (controls.log_file)  // only now: a run refused the directory must not write into another run's log
    logging::open_file(run_log_path(cfg, comm.rank()), static_cast<size_t>(cfg.log.file_max_mb * (1 << 20)),
                       static_cast<size_t>(cfg.log.file_keep));
  report.resumed = resume_or_init(cfg, env, step, comm, device, voice, progress);
  if (comm.is_root()) keep_earlier_records(cfg, report.resumed, progress.step, voice);
  std::optional<MetricsLog> metrics_log = prepare_run_directory(cfg, comm.is_root(), progress.step, voice.warn);
  std::optional<TensorBoardLog> tensorboard;  // the same records as metrics.jsonl, rank 0 too
  if (metrics_log) tensorboard.emplace(fs::path(cfg.train.run_dir) / "tb", progress.step, voice.warn);
  Checkpointer checkpointer(cfg, step, comm, voice.print);
  MetricsInterval interval(cfg.train.epoch_samples, cfg.log.peak_tflops, env.forward_flops_per_token,
                           comm.world_size());
  Validations validations(cfg, env, comm, voice, metrics_log, tensorboard, interval);
  const StepHooks hooks = step_hooks(controls, progress);
  const int64_t total = cfg.total_steps();
  const int64_t end_step = cfg.train.max_steps > 0 ? std::min(cfg.train.max_steps, total) : total;

  for (; progress.stage < static_cast<int64_t>(cfg.stages.size());
       ++progress.stage, progress.stage_step = 0, progress.stage_samples = 0) {
    const Stage& stage = cfg.stages[static_cast<size_t>(progress.stage)];
    if (progress.stage_step >= stage.steps) continue;
    if (progress.step >= end_step) break;
    const auto source = env.data(stage);
    const int64_t accum = rank_accum[static_cast<size_t>(progress.stage)];
    voice.print(describe_stage(progress, stage, accum, comm.world_size()));
    const TrainStep::Batch batch = rank_batch(*source, stage, accum, comm, progress);

    while (progress.stage_step < stage.steps && progress.step < end_step) {
      const auto step_start = std::chrono::steady_clock::now();
      const StepResult r = step.train_step(stage, progress.stage_step, accum, batch, hooks);
      if (r.stopped) {
        checkpointer.save(progress);
        report.checkpoint = checkpointer.wait();  // the stop waits for the write
        report.exit = TrainExit::stopped;
        voice.print(fmt::format("stopped at step {}; checkpoint {}", progress.step, report.checkpoint.string()));
        return report;
      }
      record_step(cfg, stage, r, step.optimizer().steps(), progress, report, voice);
      if (logging::enabled(logging::Level::debug))  // this rank's timeline: where a slow rank shows
        logging::debug(fmt::format("step {} took {:.3f} s on this rank (loss {:.6f}, grad norm {:.4g}, lr {:.4g})",
                                   progress.step,
                                   std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count(),
                                   r.loss, r.grad_norm, r.lr));
      if (progress.skipped_in_row >= cfg.train.nan_skip_limit) {
        checkpointer.save(progress);  // still the last good weights: skips never touch them
        report.checkpoint = checkpointer.wait();
        throw std::runtime_error(fmt::format(
            "{} non-finite steps in a row (train.nan_skip_limit) at step {}: stopping; the last good state is in {}",
            progress.skipped_in_row, progress.step, report.checkpoint.string()));
      }
      interval.add(r, static_cast<double>(stage.global_batch() * stage.ctx_len));
      const bool last = progress.step >= end_step || progress.stage_step >= stage.steps;
      if (metrics_log && (progress.step % cfg.log.every_steps == 0 || last)) {
        const MetricsRow row = interval.close(progress, r, end_step - progress.step);
        voice.print(format_metrics_line(row));
        metrics_log->append(row);
        tensorboard->append(row);
      }
      if (validations.due(progress, last)) validations.run(progress, stage);
      if (progress.step % cfg.checkpoint.every_steps == 0 && !last) report.checkpoint = checkpointer.save(progress);
    }
    if (progress.stage_step < stage.steps) break;  // stopped by max_steps inside the stage
  }

  checkpointer.save(progress);
  report.checkpoint = checkpointer.wait();  // the end of the run waits for the write
  validations.write_table(progress);
  report.exit = progress.step >= total ? TrainExit::finished : TrainExit::max_steps;
  voice.print(fmt::format("{} at step {}; checkpoint {}", report.exit == TrainExit::finished ? "finished" : "reached max_steps",
                          progress.step, report.checkpoint.string()));
  return report;
}

}  // namespace rwkv::trainer
