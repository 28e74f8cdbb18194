// `rwkv bench train CONFIG`: the training step of trainer/train/train_step.h, exactly as
// `rwkv train` takes it for the config (trainer/bench/bench_train.h), on random tokens, against two
// references measured in the same run at the same shapes:
//   - the model's GEMMs alone (trainer/bench/flops_peak.h): MFU here is achieved / that rate, i.e.
//     how close the step gets to its own matrix products (the CPU target is 70%);
//   - the WKV op alone, forward+backward at (B, T, A), once per layer and micro-batch: its share
//     of the step (activation checkpointing adds one more WKV forward, not counted);
//   - a plain copy's bandwidth (trainer/bench/flops_peak.h), which `rwkv bench predict` takes with
//     the GEMM rate to predict this step (trainer/bench/cost_model.h).
// FLOPs are the model's 6(13LD² + VD) per token (rwkv/README.md "Shapes"), recomputation not
// counted. On CUDA, MFU against the device's table peak is printed too when the device is known.
#include "trainer/bench/bench_train.h"

#include <c10/core/DeviceGuard.h>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>

#include "kernels/cuda_runtime_info.h"
#include "rwkv/wkv.h"
#include "trainer/config/yaml_section.h"
#include "trainer/train/memory_check.h"
#include "trainer/config/model_config_yaml.h"
#include "trainer/config/run_config.h"
#include "trainer/bench/bench.h"
#include "trainer/bench/cpu_memory_meter.h"
#include "trainer/bench/flops_peak.h"
#include "trainer/bench/op_census.h"
#include "trainer/train/train_loop.h"

namespace rwkv::bench {
namespace {

using trainer::StepPhase;

// A YAML whose only section is `model:` (a model file, as `rwkv info` takes). Invalid YAML is the
// ConfigError (file:line) parse_run_config would give.
bool model_only(const std::string& yaml, const std::string& file) {
  const YAML::Node root = load_yaml(yaml, file);
  if (!root.IsMap()) return false;
  for (const auto& kv : root)
    if (kv.first.Scalar() != "model") return false;
  return true;
}

// Per-step phase times in ms: forward + loss and backward, each summed over the micro-batches,
// then the update (gradient sync, guard, clip, Adam). With `sync` (CUDA) each boundary waits for
// the device, which the step itself never does: such steps are not the timed ones.
class PhaseClock {
 public:
  explicit PhaseClock(bool sync) : sync_(sync) {}
  trainer::StepHooks hooks() {
    return {.phase = [this](StepPhase p) { mark(p); }};
  }
  void begin() {
    std::fill(std::begin(step_), std::end(step_), 0.0);
    last_ = Clock::now();
  }
  void end() {
    for (int i = 0; i < 3; ++i) all_[i].push_back(step_[i]);
  }
  // The median of phase `i` over the last `n` steps.
  double median(int i, int n) const {
    std::vector<double> v(all_[i].end() - n, all_[i].end());
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }

 private:
  using Clock = std::chrono::steady_clock;
  void mark(StepPhase p) {
    if (sync_) torch::cuda::synchronize();
    const auto now = Clock::now();
    step_[static_cast<int>(p)] += std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
  }
  bool sync_;
  Clock::time_point last_;
  double step_[3] = {};
  std::vector<double> all_[3];
};

struct StepFigures {
  Timing step;
  double phase_ms[3] = {};     // medians: forward + loss, backward, update
  std::vector<double> losses;  // of every step, warm-up included
  // CPU: peak bytes of the tensors one more step allocates (activations, gradients, workspaces;
  // the weights and Adam state already exist), from trainer/bench/cpu_memory_meter.h. −1 on CUDA.
  int64_t step_peak_bytes = -1;
};

StepFigures time_steps(TrainBench& bench, const TrainOptions& o, const torch::Device& dev, int64_t vocab) {
  const trainer::Stage& st = bench.stage();
  // One batch of random tokens per micro-batch, on the host: the step moves it to the device, as
  // it moves the samples that training reads.
  torch::manual_seed(0);
  std::vector<torch::Tensor> batches;
  for (int64_t m = 0; m < bench.micro_batches(); ++m)
    batches.push_back(torch::randint(vocab, {st.micro_batch, st.ctx_len + 1}, torch::kLong));
  const trainer::TrainStep::Batch batch = [&](int64_t micro) { return batches[static_cast<size_t>(micro)]; };
  PhaseClock clock(dev.is_cuda());
  const trainer::StepHooks phase_hooks = clock.hooks();
  StepFigures f;
  const auto run = [&](bool phases) {
    if (phases) clock.begin();
    f.losses.push_back(bench.step(batch, phases ? phase_hooks : trainer::StepHooks{}).loss);
    if (phases) clock.end();
  };
  // On the CPU nothing runs asynchronously, so the timed steps give the phases themselves.
  const bool separate = dev.is_cuda();
  f.step = time_runs(o.steps, o.warmup, dev, [&] { run(!separate); });
  if (separate) time_runs(o.steps, 0, dev, [&] { run(true); });
  for (int i = 0; i < 3; ++i) f.phase_ms[i] = clock.median(i, o.steps);
  if (!dev.is_cuda()) {
    trainer::CpuMemoryMeter meter;
    bench.step(batch);
    f.step_peak_bytes = meter.peak();
  }
  return f;
}

// The WKV op alone at one micro-batch's shapes, forward + backward.
Timing time_wkv(const ModelConfig& config, const trainer::Stage& st, torch::ScalarType io, const torch::Device& dev,
                const TrainOptions& o) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const int64_t A = config.att();
  const torch::Tensor td = torch::linspace(-5, 3, A, f32).requires_grad_(true);
  const torch::Tensor tf = torch::full({A}, -1.2, f32).requires_grad_(true);
  const torch::Tensor k = torch::randn({st.micro_batch, st.ctx_len, A}, f32).to(io).requires_grad_(true);
  const torch::Tensor v = torch::randn({st.micro_batch, st.ctx_len, A}, f32).to(io).requires_grad_(true);
  const torch::Tensor gy = torch::randn({st.micro_batch, st.ctx_len, A}, f32).to(io);
  return time_runs(o.steps, o.warmup, dev, [&] {
    for (const auto& p : {td, tf, k, v}) p.mutable_grad() = torch::Tensor();
    rwkv::wkv(td, tf, k, v).y.backward(gy);
  });
}

std::string describe_run(const trainer::RunConfig& cfg, const TrainBench& bench, const torch::Device& dev, bool bf16) {
  const trainer::Stage& st = bench.stage();
  return fmt::format(
      "training step (TrainStep), {} (L={} D={} V={}): {} micro-batch(es) of {} x ctx {}{} = {} tokens, {} on {}, "
      "activation checkpointing {}, ZeRO stage {}, Adam lr {:.3g} (x{:.3g} warmup) clip {}, {} threads",
      cfg.file, cfg.model.n_layer, cfg.model.n_embd, cfg.model.vocab_size, bench.micro_batches(), st.micro_batch,
      st.ctx_len,
      st.segment() < st.ctx_len
          ? fmt::format(" in segments of {} ({})", st.segment(),
                        cfg.train.segment_grad == trainer::SegmentGrad::exact ? "exact" : "truncated")
          : "",
      bench.micro_batches() * st.micro_batch * st.ctx_len, bf16 ? "bf16 (fp32 masters)" : "fp32", dev.str(),
      cfg.train.activation_checkpointing ? "on" : "off", cfg.train.zero_stage, st.lr_init,
      st.warmup_steps > 0 ? 0.2 : 1.0, cfg.optimizer.grad_clip, at::get_num_threads());
}

nlohmann::json run_json(const trainer::RunConfig& cfg, const TrainBench& bench, const torch::Device& dev, bool bf16) {
  const trainer::Stage& st = bench.stage();
  return {{"bench", "train"},
          {"config", cfg.file},
          {"n_layer", cfg.model.n_layer}, {"n_embd", cfg.model.n_embd}, {"vocab_size", cfg.model.vocab_size},
          {"micro_batch", st.micro_batch}, {"ctx", st.ctx_len}, {"segment", st.segment()},
          {"grad_accum", bench.micro_batches()},
          {"tokens", bench.micro_batches() * st.micro_batch * st.ctx_len},
          {"activation_checkpointing", cfg.train.activation_checkpointing}, {"zero_stage", cfg.train.zero_stage},
          {"device", dev.str()}, {"dtype", bf16 ? "bf16" : "fp32"},
          {"threads", at::get_num_threads()}};
}

// The figures: printed as a table and, with --json, written with the run's description.
void report(const trainer::RunConfig& cfg, const TrainBench& bench, const torch::Device& dev, bool bf16,
            const StepFigures& f, const Timing& wkv, const trainer::GemmRate& gemm, const trainer::Bandwidth& bw,
            const std::string& json) {
  const trainer::Stage& st = bench.stage();
  const auto tokens = static_cast<double>(bench.micro_batches() * st.micro_batch * st.ctx_len);
  const double flops_per_token = 3.0 * bench.forward_flops_per_token();
  const auto tflops = [&](double ms) { return flops_per_token * tokens / (ms * 1e-3) / 1e12; };
  const Timing& t = f.step;
  const double tok_s = tokens / (t.median_ms * 1e-3), achieved = tflops(t.median_ms);
  const double wkv_calls = static_cast<double>(cfg.model.n_layer * bench.micro_batches());
  const double wkv_share = wkv_calls * wkv.median_ms / t.median_ms;

  fmt::print("  {:<32} {:>11} {:>11} {:>11}\n", "", "median", "min", "max");
  fmt::print("  {:<32} {:11.1f} {:11.1f} {:11.1f}\n", "step (ms)", t.median_ms, t.min_ms, t.max_ms);
  fmt::print("  {:<32} {:11.1f} {:11.1f} {:11.1f}\n", "tokens/s", tok_s, tokens / (t.max_ms * 1e-3),
             tokens / (t.min_ms * 1e-3));
  fmt::print("  {:<32} {:11.4g} {:11.4g} {:11.4g}\n", "achieved TFLOP/s (6(13LD²+VD))", achieved, tflops(t.max_ms),
             tflops(t.min_ms));
  fmt::print("  {:<32} {:11.4g} {:11.4g} {:11.4g}\n", "GEMMs alone TFLOP/s", gemm.median_tflops, gemm.min_tflops,
             gemm.max_tflops);
  fmt::print("  {:<32} {:11.0f} {:11.0f} {:11.0f}\n", "copy GB/s (read + written)", bw.median_gbs, bw.min_gbs,
             bw.max_gbs);
  fmt::print("  {:<32} {:11.2f} {:11.2f} {:11.2f}\n", "WKV op fwd+bwd x L x micro (ms)", wkv_calls * wkv.median_ms,
             wkv_calls * wkv.min_ms, wkv_calls * wkv.max_ms);
  fmt::print("  phases (median ms{}): forward + loss {:.1f}, backward {:.1f}, sync + guard + clip + Adam {:.1f}\n",
             dev.is_cuda() ? ", from extra steps that synchronize at each phase" : "", f.phase_ms[0], f.phase_ms[1],
             f.phase_ms[2]);
  fmt::print("  GEMM time at the GEMMs-alone rate: {:.1f} ms of the step's {:.1f} ms\n",
             flops_per_token * tokens / (gemm.median_tflops * 1e12) * 1e3, t.median_ms);
  fmt::print("  MFU vs the GEMMs alone: {:.1f}%   WKV share of the step: {:.1f}%\n", 100 * achieved / gemm.median_tflops,
             100 * wkv_share);
  if (f.step_peak_bytes >= 0)
    fmt::print("  peak tensor memory of a step beyond weights and Adam (CPU): {:.1f} MiB\n",
               static_cast<double>(f.step_peak_bytes) / (1 << 20));
  nlohmann::json j = run_json(cfg, bench, dev, bf16);
  j.update({{"step", to_json(t)},
            {"tokens_per_s", tok_s},
            {"achieved_tflops", achieved},
            {"gemm_tflops", {{"median", gemm.median_tflops}, {"min", gemm.min_tflops}, {"max", gemm.max_tflops}}},
            {"mfu_vs_gemm", achieved / gemm.median_tflops},
            {"copy_gbs", {{"median", bw.median_gbs}, {"min", bw.min_gbs}, {"max", bw.max_gbs}}},
            {"wkv_fwd_bwd_per_layer", to_json(wkv)},
            {"wkv_share", wkv_share},
            {"phases_median_ms", {{"forward_loss", f.phase_ms[0]}, {"backward", f.phase_ms[1]}, {"update", f.phase_ms[2]}}},
            {"losses", f.losses}});
  if (f.step_peak_bytes >= 0) j["step_peak_bytes"] = f.step_peak_bytes;
  if (dev.is_cuda()) {
    const std::string name = kernels::cuda_device_name(dev.has_index() ? dev.index() : 0);
    if (const auto peak = trainer::known_bf16_peak_tflops(name)) {
      fmt::print("  MFU vs the {} dense bf16 peak ({} TFLOP/s): {:.1f}%\n", name, *peak, 100 * achieved / *peak);
      j["table_peak_tflops"] = *peak;
      j["mfu_vs_table"] = achieved / *peak;
    }
  }
  write_json(json, j);
}

}  // namespace

trainer::RunConfig bench_train_config(const TrainOptions& o) {
  const std::string yaml = read_config_text(o.config);
  std::vector<trainer::Override> overrides;
  if (model_only(yaml, o.config))
    overrides = {{"data.path", "random-tokens"}, {"data.ctx_len", "512"},   {"train.run_dir", "unused"},
                 {"train.micro_batch", "8"},     {"train.epoch_count", "1"}, {"optimizer.lr_init", "6.0e-4"}};
  const torch::Device dev = device_flag(o.device, "bench train");
  overrides.push_back({"train.device", dev.is_cuda() ? "cuda" : "cpu"});
  if (!dev.is_cuda()) overrides.push_back({"train.precision", "auto"});
  for (const auto& s : o.sets) overrides.push_back(trainer::parse_override(s));
  trainer::RunConfig cfg = trainer::parse_run_config(yaml, o.config, overrides);
  trainer::Stage& first = cfg.stages.front();
  if (o.micro_batch) first.micro_batch = *o.micro_batch;
  if (o.ctx) first.ctx_len = *o.ctx;
  if (o.segment) first.segment_len = *o.segment;
  return cfg;
}

TrainBench::TrainBench(const trainer::RunConfig& config, const torch::Device& device)
    : alone_(DistEnv{}, torch::kCPU, std::chrono::seconds(1)),
      model_(trainer::build_trained_model(config, device)),
      stage_(config.stages.front()),
      micro_batches_(trainer::micro_batches_per_rank(config, 0, 1)),
      step_(config, named_parameters(*model_.model), model_.forward, alone_, device) {}

trainer::StepResult TrainBench::step(const trainer::TrainStep::Batch& batch, const trainer::StepHooks& hooks) {
  const trainer::StepResult r = step_.train_step(stage_, stage_step_, micro_batches_, batch, hooks);
  if (!r.stopped) ++stage_step_;
  return r;
}

void bench_train(const TrainOptions& o) {
  if ((o.micro_batch && *o.micro_batch < 1) || (o.ctx && *o.ctx < 1) || (o.segment && *o.segment < 0) || o.steps < 1 ||
      o.warmup < 0)
    throw std::invalid_argument(
        "bench train: --micro-batch, --ctx and --steps must be positive, --segment and --warmup non-negative");
  const trainer::RunConfig cfg = bench_train_config(o);
  if (o.census) {
    const trainer::Stage& st = cfg.stages.front();
    nlohmann::json j = {{"bench", "train"}, {"config", cfg.file}};
    j["census"] = report_block_census(cfg.model, st.micro_batch, st.ctx_len);
    write_json(o.json, j);
    return;
  }
  const torch::Device requested = device_flag(o.device, "bench train");
  const torch::Device dev = trainer::run_device(cfg, requested.has_index() ? requested.index() : 0);
  const c10::DeviceGuard device_guard(dev);
  trainer::RunConfig first_stage = cfg;  // the bench runs the first stage only
  first_stage.stages.resize(1);
  trainer::check_run_fits(first_stage, dev, 1);
  TrainBench bench(cfg, dev);
  const bool bf16 = bench.dtype() == torch::kBFloat16;
  fmt::print("{}\n", describe_run(cfg, bench, dev, bf16));

  const StepFigures f = time_steps(bench, o, dev, cfg.model.vocab_size);
  const trainer::Stage& st = bench.stage();
  const auto io = bf16 ? torch::kBFloat16 : torch::kFloat32;
  const Timing wkv_t = time_wkv(cfg.model, st, io, dev, o);
  const trainer::GemmRate gemm = trainer::measure_gemm_rate(
      cfg.model, st.micro_batch * st.ctx_len, torch::TensorOptions().dtype(io).device(dev), o.steps, o.warmup);
  // The copy bandwidth, for `rwkv bench predict` (the GPU bundle sets its prediction next to this run).
  const trainer::Bandwidth bw =
      trainer::measure_copy_bandwidth(dev.is_cuda() ? int64_t{1} << 30 : int64_t{64} << 20, dev, o.steps, o.warmup);
  report(cfg, bench, dev, bf16, f, wkv_t, gemm, bw, o.json);
}

}  // namespace rwkv::bench
