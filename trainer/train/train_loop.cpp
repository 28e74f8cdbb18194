#include "trainer/train/train_loop.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "data/sampler.h"
#include "trainer/config/yaml_section.h"
#include "trainer/dist/communicator.h"
#include "trainer/io/atomic_file.h"
#include "trainer/train/autocast_scope.h"
#include "trainer/train/l2wrap.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/train/metrics.h"
#include "trainer/dist/parallel_optimizer.h"

namespace rwkv::trainer {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

void copy_weights(const NamedTensors& params, const std::map<std::string, torch::Tensor>& weights,
                  const std::string& source) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    const auto it = weights.find(name);
    if (it == weights.end()) throw std::runtime_error(source + ": no weight '" + name + "'");
    if (!it->second.sizes().equals(p.sizes()))
      throw std::runtime_error(fmt::format("{}: '{}' has shape {}, the model {}", source, name,
                                           fmt::join(it->second.sizes(), "x"), fmt::join(p.sizes(), "x")));
    p.copy_(it->second);
  }
}

NamedTensors named_parameters(torch::nn::Module& m) {
  NamedTensors out;
  for (const auto& kv : m.named_parameters()) out.emplace_back(kv.key(), kv.value());
  return out;
}

// The sum over ranks of one number per rank (a tensor on the backend's device: NCCL needs CUDA).
double sum_over_ranks(Communicator& comm, double value, const torch::Device& device) {
  if (comm.world_size() == 1) return value;
  auto t = torch::full({1}, value, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  comm.all_reduce_sum(t);
  return t.item<double>();
}

// Every rank ends up with the step of the checkpoint it resumes from (-1: none). A rank that
// found another one than rank 0 (checkpoint.dir not shared, a write still in flight) fails the run
// on all ranks alike instead of training from different states.
void agree_on_resume_step(Communicator& comm, int64_t mine, const torch::Device& device, const std::string& dir) {
  if (comm.world_size() == 1) return;
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

torch::Device resolve_device(const RunConfig& c, int local_rank) {
  const bool cuda = c.train.device == DeviceKind::cuda ||
                    (c.train.device == DeviceKind::auto_ && torch::cuda::is_available());
  if (cuda && !torch::cuda::is_available())
    throw ConfigError(c.file + ": train.device: cuda requested but torch sees no CUDA device");
  if (cuda && c.model.n_embd % 32 != 0)
    throw ConfigError(fmt::format("{}: train.device: cuda needs model.n_embd to be a multiple of 32, got {}",
                                  c.file, c.model.n_embd));
  if (!cuda && c.train.precision == Precision::bf16)
    throw ConfigError(c.file + ": train.precision: bf16 needs a CUDA device (the CPU path trains in fp32)");
  // Modulo: a launcher that binds one GPU per task (Slurm --gpus-per-task=1) leaves each rank a
  // single visible device 0. Two ranks on one GPU are refused by NCCL itself ("Duplicate GPU").
  const auto gpus = static_cast<int>(torch::cuda::device_count());
  return cuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % gpus)) : torch::Device(torch::kCPU);
}

TrainReport run_training(const RunConfig& cfg, TrainEnv& env, const TrainControls& controls) {
  std::optional<Communicator> alone;
  Communicator& comm = env.comm ? *env.comm : alone.emplace(DistEnv{}, torch::kCPU, std::chrono::seconds(1));
  const bool root = comm.is_root();
  const int world = comm.world_size();
  // Rank 0 speaks for the run; the others would repeat it.
  using Sink = std::function<void(const std::string&)>;
  const Sink silent = [](const std::string&) {};
  const Sink print = !root ? silent : controls.print ? controls.print : Sink([](const std::string& s) {
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  });
  const Sink warn = !root ? silent : controls.warn ? controls.warn : Sink([](const std::string& s) {
    std::fprintf(stderr, "warning: %s\n", s.c_str());
  });
  const torch::Device device = resolve_device(cfg, comm.env().local_rank);
  const bool bf16 = device.is_cuda() && cfg.train.precision != Precision::fp32;
  std::vector<int64_t> rank_accum;
  for (size_t i = 0; i < cfg.stages.size(); ++i) rank_accum.push_back(micro_batches_per_rank(cfg, i, world));
  // Rank 0 alone writes a checkpoint while the others wait for its word: a big one takes minutes,
  // more than a collective may. A rank 0 that dies meanwhile is noticed at once (its connection
  // closes), so the long wait only covers slow disks.
  const auto checkpoint_wait = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(static_cast<int64_t>(cfg.train.dist_timeout_s * 1000)), std::chrono::minutes(30));

  const fs::path run_dir = cfg.train.run_dir, ckpt_dir = cfg.checkpoint.dir;
  if (root) fs::create_directories(run_dir);
  const std::string config_yaml = cfg.to_yaml();

  const NamedTensors params = named_parameters(*env.model);
  const auto optimizer = make_parallel_optimizer(params, cfg.optimizer, comm, cfg.train.zero_stage,
                                                 static_cast<int64_t>(cfg.train.grad_bucket_mb * (1 << 20)),
                                                 cfg.train.overlap_grad_reduce);
  TrainReport report;
  TrainProgress& progress = report.progress;

  // Resume, or start from another run's weights, or from the caller's initialisation.
  std::optional<std::pair<fs::path, Checkpoint>> latest;
  if (cfg.checkpoint.resume == ResumeMode::auto_) latest = load_latest_checkpoint(ckpt_dir, warn);
  agree_on_resume_step(comm, latest ? latest->second.progress.step : -1, device, ckpt_dir.string());
  if (latest) {
    const auto& [path, ck] = *latest;
    const RunConfig saved = parse_run_config(ck.config_yaml, (path / "config.yaml").string());
    const std::string change = unsafe_resume_change(saved, cfg);
    if (!change.empty())
      throw ConfigError(fmt::format("{}: cannot resume from {}: the config changed in a field that alters the run: {} "
                                    "(start a new run_dir, or set checkpoint.resume: never)",
                                    cfg.file, path.string(), change));
    copy_weights(params, ck.weights, path.string());
    optimizer->load_full_state(ck.optimizer, ck.progress.adam_steps);
    restore_rng(ck);
    progress = ck.progress;
    report.resumed = true;
    print(fmt::format("resumed from {} (step {}, stage {}, stage step {})", path.string(), progress.step,
                      progress.stage, progress.stage_step));
  } else if (!cfg.checkpoint.init_from.empty()) {
    const fs::path from = cfg.checkpoint.init_from;
    if (env.load_weights) {
      copy_weights(params, env.load_weights(from.string()), from.string());
    } else if (fs::is_directory(from)) {
      copy_weights(params, load_checkpoint(from, CheckpointParts::weights).weights, from.string());
    } else {
      throw ConfigError(cfg.file + ": checkpoint.init_from: '" + from.string() + "' is not a checkpoint directory");
    }
    print("initial weights from " + from.string());
  }
  if (world > 1) {
    // Whatever each rank built or loaded, all start from rank 0's weights.
    torch::NoGradGuard no_grad;
    for (const auto& [name, p] : params) {
      auto values = p.detach();  // shares p's storage
      comm.broadcast(values);
    }
  }
  std::optional<MetricsLog> metrics;
  if (root) {
    io::write_atomically(run_dir / "config.yaml", [&](const fs::path& temp) {
      std::ofstream out(temp, std::ios::trunc);
      out << config_yaml;
      if (!out.flush()) throw std::runtime_error(temp.string() + ": cannot write");
    });
    metrics.emplace(run_dir / "metrics.jsonl", progress.step);
  }

  // Collective: every rank calls it at the same point; rank 0 writes.
  const auto checkpoint_now = [&] {
    Checkpoint ck;
    ck.progress = progress;
    ck.progress.adam_steps = optimizer->steps();
    for (const auto& [name, t] : optimizer->full_state()) ck.optimizer[name] = t;
    bool ok = true;
    std::string message;
    if (root) {
      try {
        for (const auto& [name, p] : params) ck.weights[name] = p;
        capture_rng(ck);
        ck.config_yaml = config_yaml;
        message = save_checkpoint(ckpt_dir, ck, cfg.checkpoint.keep).string();
      } catch (const std::exception& e) {
        ok = false;
        message = e.what();
      }
    }
    const auto [written, word] = comm.root_outcome(ok, message, checkpoint_wait);
    if (!written) throw std::runtime_error(root ? word : "rank 0 could not write the checkpoint: " + word);
    report.checkpoint = word;
  };

  const int64_t end_step = cfg.train.max_steps > 0 ? std::min(cfg.train.max_steps, cfg.total_steps()) : cfg.total_steps();
  const int64_t V = cfg.model.vocab_size;
  auto interval_start = Clock::now();
  int64_t interval_steps = 0, interval_applied = 0;
  double interval_tokens = 0, interval_loss = 0, step_seconds_avg = 0;

  for (; progress.stage < static_cast<int64_t>(cfg.stages.size());
       ++progress.stage, progress.stage_step = 0, progress.stage_samples = 0) {
    const Stage& stage = cfg.stages[static_cast<size_t>(progress.stage)];
    if (progress.stage_step >= stage.steps) continue;
    if (progress.step >= end_step) break;
    auto source = env.data(stage);
    const int64_t accum = rank_accum[static_cast<size_t>(progress.stage)];
    const data::BatchLayout layout{world, static_cast<int>(stage.micro_batch), static_cast<int>(accum)};
    print(fmt::format("stage {}: ctx_len {}, global batch {} ({} x {}), {} steps{}", progress.stage, stage.ctx_len,
                      stage.global_batch(), stage.micro_batch, stage.grad_accum, stage.steps,
                      world > 1 ? fmt::format(", {} micro-batches on each of {} ranks", accum, world) : ""));

    while (progress.stage_step < stage.steps) {
      if (progress.step >= end_step) break;
      const double lr = learning_rate(stage, progress.stage_step);
      for (const auto& [name, p] : params) p.mutable_grad() = torch::Tensor();

      double loss_sum = 0;
      for (int64_t micro = 0; micro < accum; ++micro) {
        bool stop = (controls.stop && controls.stop->load()) ||
                    (controls.stop_before && controls.stop_before(progress, micro));
        // A signal reaches the ranks at slightly different times: stop where any rank asks.
        if (world > 1) stop = sum_over_ranks(comm, stop ? 1 : 0, device) > 0;
        if (stop) {
          // The partial accumulation is dropped: the checkpoint holds the last complete step, and
          // the resumed run redoes this one from its first micro-batch on the same samples.
          checkpoint_now();
          report.exit = TrainExit::stopped;
          print(fmt::format("stopped at step {}; checkpoint {}", progress.step, report.checkpoint.string()));
          return report;
        }
        std::vector<int64_t> rows = data::micro_batch_indices(layout, 0, static_cast<int>(micro), comm.rank());
        for (auto& g : rows) g += progress.stage_samples;
        const auto batch = source->samples_at(rows).to(device, torch::kLong);
        const auto inputs = batch.narrow(1, 0, stage.ctx_len), targets = batch.narrow(1, 1, stage.ctx_len);
        torch::Tensor loss, total;
        {
          AutocastScope autocast(bf16);
          const auto logits = env.forward(inputs);
          loss = torch::nn::functional::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32),
                                                      targets.reshape({-1}));
          total = cfg.optimizer.l2wrap > 0 ? l2wrap(loss, logits, cfg.optimizer.l2wrap) : loss;
        }
        // Each micro-batch's loss is divided by the rank's micro-batch count, and the gradient
        // averaged over ranks, so the result is that of one batch of micro_batch·grad_accum
        // samples; L2Wrap follows the same scale (trainer/train/l2wrap.h).
        if (micro == accum - 1) optimizer->before_last_backward();
        (total / static_cast<double>(accum)).backward();
        loss_sum += loss.item<double>();
      }
      if (controls.after_backward) controls.after_backward(progress, params);

      // Identical on every rank from here (averaged loss and gradients), so all take the same branch.
      optimizer->reduce_gradients();
      const double loss = sum_over_ranks(comm, loss_sum, device) / static_cast<double>(stage.grad_accum);
      const double norm = optimizer->grad_norm();
      const bool finite = std::isfinite(loss) && std::isfinite(norm);
      if (finite) {
        optimizer->clip(norm, cfg.optimizer.grad_clip);
        optimizer->step(lr, stage.lr_mult);
        progress.skipped_in_row = 0;
      } else {
        ++progress.skipped_total;
        ++progress.skipped_in_row;
        warn(fmt::format("step {}: non-finite {} (loss {}, grad norm {}); step skipped ({} in a row, limit {})",
                         progress.step + 1, std::isfinite(loss) ? "gradient" : "loss", loss, norm,
                         progress.skipped_in_row, cfg.train.nan_skip_limit));
      }
      for (const auto& [name, p] : params) p.mutable_grad() = torch::Tensor();
      report.losses.push_back(finite ? loss : std::numeric_limits<double>::quiet_NaN());
      ++progress.step;
      ++progress.stage_step;
      progress.stage_samples += stage.global_batch();
      progress.tokens += static_cast<double>(stage.global_batch() * stage.ctx_len);
      progress.adam_steps = optimizer->steps();

      if (progress.skipped_in_row >= cfg.train.nan_skip_limit) {
        checkpoint_now();  // the weights are still the last good ones: skipped steps never touch them
        throw std::runtime_error(fmt::format(
            "{} non-finite steps in a row (train.nan_skip_limit) at step {}: stopping; the last good state is in {}",
            progress.skipped_in_row, progress.step, report.checkpoint.string()));
      }

      ++interval_steps;
      interval_tokens += static_cast<double>(stage.global_batch() * stage.ctx_len);
      if (finite) {
        interval_loss += loss;
        ++interval_applied;
      }
      const bool last = progress.step >= end_step || progress.stage_step >= stage.steps;
      if (root && (progress.step % cfg.log.every_steps == 0 || last)) {
        const double seconds = std::chrono::duration<double>(Clock::now() - interval_start).count();
        const double per_step = seconds / static_cast<double>(interval_steps);
        step_seconds_avg = step_seconds_avg == 0 ? per_step : 0.7 * step_seconds_avg + 0.3 * per_step;
        MetricsRow row;
        row.step = progress.step;
        row.stage = progress.stage;
        row.mini_epoch = static_cast<double>(progress.stage_samples) / static_cast<double>(cfg.train.epoch_samples);
        row.loss = interval_applied ? interval_loss / static_cast<double>(interval_applied)
                                    : std::numeric_limits<double>::quiet_NaN();
        row.lr = lr;
        row.grad_norm = norm;
        row.tokens_per_s = seconds > 0 ? interval_tokens / seconds : 0;
        if (cfg.log.peak_tflops > 0)
          row.mfu = row.tokens_per_s * 3 * env.forward_flops_per_token / (world * cfg.log.peak_tflops * 1e12);
        row.memory_gib = resident_memory_gib();
        row.eta_s = step_seconds_avg * static_cast<double>(end_step - progress.step);
        row.skipped = progress.skipped_total;
        print(format_metrics_line(row));
        metrics->append(row);
        interval_start = Clock::now();
        interval_steps = interval_applied = 0;
        interval_tokens = interval_loss = 0;
      }
      if (progress.step % cfg.checkpoint.every_steps == 0 && !last) checkpoint_now();
    }
    if (progress.stage_step < stage.steps) break;  // stopped by max_steps inside the stage
  }

  checkpoint_now();
  report.exit = progress.step >= cfg.total_steps() ? TrainExit::finished : TrainExit::max_steps;
  print(fmt::format("{} at step {}; checkpoint {}", report.exit == TrainExit::finished ? "finished" : "reached max_steps",
                    progress.step, report.checkpoint.string()));
  return report;
}

}  // namespace rwkv::trainer
