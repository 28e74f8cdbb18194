// `rwkv bench memory CONFIG`: what one rank of a training run holds in CPU memory, measured with
// the counting allocator (trainer/bench/cpu_memory_meter.h) around the very step training takes
// (trainer/train/train_step.h), next to `rwkv plan`'s estimate (trainer/dist/memory_plan.h) of each
// category and their ratio (issue 14: "rwkv plan = measurement"). Under torchrun every rank
// measures itself over Gloo and rank 0 prints every rank's figures.
//
// Measured, in the order the run allocates them (bytes alive in tensors; memory_plan's name):
//   weights      what building the model left alive: the module's parameters (weights);
//   optimizer    what the optimizer keeps between steps: alive after a first step, less the
//                weights (master + adam; persistent gradient buffers would show here too);
//   grads        gradient storage entering the update: alive after the step's last backward, less
//                what was alive before the step (grads);
//   forward      what a micro-batch's forward and loss keep for its backward: alive after them,
//                less what was alive before (activations, the saved part of head);
//   act+head     one micro-batch's forward and backward: its peak less what was alive before it,
//                the largest over the micro-batches after the first (the first also creates the
//                gradients; the later ones hold each parameter's incoming gradient until it is
//                added to .grad) (activations + head + boundaries; with activation checkpointing
//                total − state + boundaries);
//   update       the update's peak above what entered it: reduction buffers, norm, Adam's
//                temporaries (no term in the plan);
//   peak         the measured step's peak of everything (total).
// The categories follow the implementation, not its names, so a change of where the optimizer
// keeps what (bf16 module weights with fp32 masters, gradient shards) needs no change here.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

#include "trainer/bench/bench.h"
#include "trainer/bench/bench_train.h"
#include "trainer/bench/cpu_memory_meter.h"
#include "trainer/dist/memory_plan.h"
#include "trainer/train/train_loop.h"

namespace rwkv::bench {
namespace {

using trainer::StepPhase;

enum Figure { kWeights, kOptimizer, kGrads, kForward, kActivations, kUpdate, kPeak, kFigures };
constexpr std::array<const char*, kFigures> kNames = {"weights", "optimizer", "grads", "forward",
                                                      "act+head", "update", "peak"};
constexpr std::array<const char*, kFigures> kPlanNames = {"weights", "master + adam + kept buffers",
                                                          "grads (whole sums)", "activations", "activations + head",
                                                          "update buffers", "total"};
using Figures = std::array<double, kFigures>;

// The plan's figures for the same categories (update: none, -1).
Figures planned(const trainer::RunConfig& cfg, int world, bool bf16) {
  const trainer::Stage& st = cfg.stages.front();
  const PlanRequest req{.model = cfg.model, .gpus = world, .micro_batch = st.micro_batch, .ctx_len = st.ctx_len,
                        .segment_len = st.segment_len, .compute_bytes = bf16 ? 2 : 4,
                        .bucket_bytes = cfg.train.grad_bucket_mb * (1 << 20)};
  const Sharding sharding = sharding_of(cfg.train.zero_stage);
  const MemoryEstimate e = estimate_memory(req, sharding);
  const double total = e.total(cfg.train.activation_checkpointing);
  // The segment boundaries' RNN states live while a micro-batch runs: measured with it.
  const double kept = cfg.train.activation_checkpointing ? e.activations_ckpt - e.block : e.activations;
  // What stays between steps besides the weights: masters, moments, DDP's all-reduce buckets
  // (with several ranks: the gradients' home), the ZeRO gradient shard (4 bytes per parameter /
  // N); what a step's backward adds: the whole fp32 sums (one-rank DDP, ZeRO-1), nothing lasting
  // under ZeRO-2 (its staging is transient).
  const double shard = sharding == Sharding::DDP ? 0 : 4 * planned_parameter_count(cfg.model) / world;
  const bool in_buckets = sharding == Sharding::DDP && world > 1;
  const double persistent = in_buckets ? e.grads : shard;
  const double step_grads = sharding == Sharding::ZeRO2 ? -1 : in_buckets ? 0 : e.grads - shard;
  // The fused loss keeps the logits beside the activations; a micro-batch's peak holds ZeRO-2's
  // staging too.
  return {e.weights,
          e.master + e.adam + persistent,
          step_grads,
          kept + e.head,
          e.backward_peak(cfg.train.activation_checkpointing) + e.boundaries,
          e.update_buffers > 0 ? e.update_buffers : -1,
          total};
}

// This rank's figures: the model and TrainStep built under the meter, one step to create what
// the optimizer keeps, then one measured step (phase hooks read the meter at each boundary).
Figures measure(const trainer::RunConfig& cfg, const torch::Device& dev, Communicator& comm, int64_t micro_batches,
                const std::vector<torch::Tensor>& batches, bool& bf16) {
  const trainer::Stage& stage = cfg.stages.front();
  const trainer::TrainStep::Batch batch = [&](int64_t micro) { return batches[static_cast<size_t>(micro)]; };
  trainer::CpuMemoryMeter meter;
  Figures f{};
  trainer::TrainedModel model = trainer::build_trained_model(cfg, dev);
  f[kWeights] = static_cast<double>(meter.current());
  trainer::TrainStep step(cfg, named_parameters(*model.model), model.forward, comm, dev);
  bf16 = step.dtype() == torch::kBFloat16;
  step.train_step(stage, 0, micro_batches, batch);
  const auto steady = static_cast<double>(meter.current());
  f[kOptimizer] = steady - f[kWeights];

  int64_t micro = 0;
  double before = steady, peak = 0;
  trainer::StepHooks hooks;
  hooks.phase = [&](StepPhase p) {
    const auto now = static_cast<double>(meter.current()), high = static_cast<double>(meter.peak());
    peak = std::max(peak, high);
    if (p == StepPhase::forward) {
      f[kForward] = std::max(f[kForward], now - before);
    } else if (p == StepPhase::backward) {
      if (micro > 0 || micro_batches == 1) f[kActivations] = std::max(f[kActivations], high - before);
      if (++micro == micro_batches) f[kGrads] = now - steady;
      before = now;
      meter.reset_peak();
    } else if (p == StepPhase::update) {
      f[kUpdate] = high - before;
    }
  };
  meter.reset_peak();
  step.train_step(stage, 1, micro_batches, batch, hooks);
  f[kPeak] = std::max(peak, static_cast<double>(meter.peak()));
  // One micro-batch per rank: its peak held the new gradients too.
  if (micro_batches == 1) f[kActivations] -= f[kGrads];
  return f;
}

std::string mib(double bytes) { return bytes < 0 ? "-" : fmt::format("{:.1f}", bytes / (1 << 20)); }
std::string ratio(double measured, double plan) { return plan > 0 ? fmt::format("{:.3f}", measured / plan) : "-"; }

}  // namespace

void bench_memory(const MemoryOptions& o) {
  if ((o.micro_batch && *o.micro_batch < 1) || (o.ctx && *o.ctx < 1) || (o.segment && *o.segment < 0) || o.accum < 1)
    throw std::invalid_argument(
        "bench memory: --micro-batch, --ctx and --accum must be positive, --segment non-negative");
  const DistEnv env = dist_env_from_process();
  TrainOptions t{.config = o.config, .micro_batch = o.micro_batch, .ctx = o.ctx, .segment = o.segment,
                 .device = "cpu", .sets = o.sets};
  if (o.zero_stage) t.sets.push_back(fmt::format("train.zero_stage={}", *o.zero_stage));
  trainer::RunConfig cfg = bench_train_config(t);
  cfg.stages.resize(1);  // the first stage's step, as `rwkv bench train`
  cfg.stages.front().grad_accum = o.accum * env.world_size;
  if (cfg.train.threads > 0) torch::set_num_threads(static_cast<int>(cfg.train.threads));
  const torch::Device dev(torch::kCPU);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.train.dist_timeout_s * 1000));
  Communicator comm(env, dev, timeout);
  const int64_t micro_batches = trainer::micro_batches_per_rank(cfg, 0, comm.world_size());

  // Random tokens, made before the meter starts: what a data loader hands the step.
  const trainer::Stage& st = cfg.stages.front();
  torch::manual_seed(comm.rank());
  std::vector<torch::Tensor> batches;
  for (int64_t m = 0; m < micro_batches; ++m)
    batches.push_back(torch::randint(cfg.model.vocab_size, {st.micro_batch, st.ctx_len + 1}, torch::kLong));
  bool bf16 = false;
  const Figures mine = measure(cfg, dev, comm, micro_batches, batches, bf16);
  const Figures plan = planned(cfg, comm.world_size(), bf16);

  // Every rank's figures to rank 0.
  std::vector<Figures> ranks(static_cast<size_t>(comm.world_size()));
  torch::Tensor in = torch::tensor(std::vector<double>(mine.begin(), mine.end()), torch::kFloat64);
  if (comm.grouped()) {
    torch::Tensor all = torch::empty({comm.world_size() * kFigures}, torch::kFloat64);
    comm.all_gather(all, in);
    for (int r = 0; r < comm.world_size(); ++r)
      for (int i = 0; i < kFigures; ++i) ranks[static_cast<size_t>(r)][static_cast<size_t>(i)] = all[r * kFigures + i].item<double>();
  } else {
    ranks[0] = mine;
  }
  if (!comm.is_root()) return;

  const int64_t params = static_cast<int64_t>(planned_parameter_count(cfg.model));
  fmt::print("bench memory: {} (L={} D={} V={}, {} parameters), {} rank(s){}, ZeRO-{}, {}, {} micro-batch(es) of {} x "
             "ctx {}{} per rank, activation checkpointing {}\n",
             cfg.file, cfg.model.n_layer, cfg.model.n_embd, cfg.model.vocab_size, params, comm.world_size(),
             comm.grouped() ? " (Gloo)" : "", cfg.train.zero_stage, bf16 ? "bf16" : "fp32", micro_batches,
             st.micro_batch, st.ctx_len, st.segment() < st.ctx_len ? fmt::format(" in segments of {}", st.segment()) : "",
             cfg.train.activation_checkpointing ? "on" : "off");
  fmt::print("{:>4}  {:<10} {:>12} {:>12} {:>9}  {}\n", "rank", "category", "measured MiB", "planned MiB", "ratio",
             "plan term");
  nlohmann::json j = {{"bench", "memory"}, {"config", cfg.file}, {"n_layer", cfg.model.n_layer},
                      {"n_embd", cfg.model.n_embd}, {"vocab_size", cfg.model.vocab_size}, {"parameters", params},
                      {"ranks", comm.world_size()}, {"zero_stage", cfg.train.zero_stage},
                      {"dtype", bf16 ? "bf16" : "fp32"}, {"micro_batch", st.micro_batch}, {"ctx", st.ctx_len},
                      {"segment", st.segment()}, {"micro_batches_per_rank", micro_batches},
                      {"activation_checkpointing", cfg.train.activation_checkpointing}};
  for (int i = 0; i < kFigures; ++i) j["planned"][kNames[static_cast<size_t>(i)]] = plan[static_cast<size_t>(i)];
  for (int r = 0; r < comm.world_size(); ++r) {
    nlohmann::json row;
    for (int i = 0; i < kFigures; ++i) {
      const auto k = static_cast<size_t>(i);
      const double m = ranks[static_cast<size_t>(r)][k];
      fmt::print("{:>4}  {:<10} {:>12} {:>12} {:>9}  {}\n", r, kNames[k], mib(m), mib(plan[k]), ratio(m, plan[k]),
                 kPlanNames[k]);
      row[kNames[k]] = m;
    }
    j["measured"].push_back(row);
  }
  write_json(o.json, j);
}

}  // namespace rwkv::bench
