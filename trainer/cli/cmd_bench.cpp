// `rwkv bench wkv|train|generate|loss|predict|memory`: registration of the options; the benchmarks themselves are in
// trainer/bench/bench_*.cpp (trainer/bench/bench.h).
#include <torch/torch.h>

#include "kernels/wkv_schedule.h"
#include "trainer/bench/bench.h"
#include "trainer/bench/bench_loss.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/option_checks.h"
#include "trainer/io/output_path.h"

namespace rwkv::cli {

namespace {

// --json and --force of one benchmark; the file is checked before the benchmark runs.
struct JsonOut {
  bool force = false;
  void add(CLI::App* cmd, std::string& path) {
    cmd->add_option("--json", path, "also write the figures to this JSON file");
    cmd->add_flag("--force", force, io::kForceHelp);
  }
  void check(const std::string& path, const std::vector<std::filesystem::path>& inputs) const {
    if (!path.empty()) io::check_output_path(path, io::OutputKind::json, force, inputs, "--json");
  }
};

// --micro-batch, --ctx and --segment of the benchmarks that run a training step: each sets its
// optional only when given (unset: the config's first stage).
void add_step_shape(CLI::App* cmd, std::optional<int64_t>& micro_batch, std::optional<int64_t>& ctx,
                    std::optional<int64_t>& segment) {
  cmd->add_option_function<int64_t>(
      "--micro-batch", [&micro_batch](const int64_t& v) { micro_batch = v; },
      "sequences per micro-batch (default: the config's)");
  cmd->add_option_function<int64_t>(
      "--ctx", [&ctx](const int64_t& v) { ctx = v; }, "tokens per sequence (default: the config's first stage)");
  cmd->add_option_function<int64_t>(
      "--segment", [&segment](const int64_t& v) { segment = v; },
      "run each sequence in segments of this many tokens (train.segment_len; 0: whole)");
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks: figures with median/min/max, as a table and --json");
  bench->require_subcommand(1);
  // CLI11 writes options into storage that outlives parsing.
  static bench::WkvOptions w;
  auto* wkv = bench->add_subcommand("wkv", "WKV op forward and forward+backward vs a per-timestep ATen implementation");
  wkv->add_option("--B", w.B, "batch")->capture_default_str();
  wkv->add_option("--T", w.T, "sequence length")->capture_default_str();
  wkv->add_option("--C", w.C, "channels")->capture_default_str();
  wkv->add_option("--runs", w.runs, "timed runs")->capture_default_str();
  wkv->add_option("--warmup", w.warmup, "untimed runs first")->capture_default_str();
  wkv->add_option("--device", w.device, "cpu or cuda[:N]")->check(device_name)->capture_default_str();
  wkv->add_option("--dtype", w.dtype, "k/v dtype")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  wkv->add_flag("--no-loop", w.no_loop, "time only the op, not the ATen per-step loop");
  static JsonOut w_out;
  w_out.add(wkv, w.json);
  wkv->callback([] {
    w_out.check(w.json, {});
    bench::bench_wkv(w);
  });

  static bench::TrainOptions t;
  auto* train = bench->add_subcommand(
      "train", "The config's training step (as `rwkv train` takes it): tokens/s, FLOP/s, MFU vs its GEMMs alone");
  train->add_option("config", t.config, "run config YAML, or one with only a model: section")->required();
  add_step_shape(train, t.micro_batch, t.ctx, t.segment);
  train->add_option("--steps", t.steps, "timed steps")->capture_default_str();
  train->add_option("--warmup", t.warmup, "untimed steps first")->capture_default_str();
  train->add_option("--device", t.device, "auto, cpu or cuda[:N] (the CPU step is fp32)")
      ->check(device_name)
      ->capture_default_str();
  train->add_flag("--census", t.census,
                  "instead of timing: count the operators and bytes of one block's forward and backward (on the CPU)");
  train->add_option("--set", t.sets, "override a config field: section.key=value")->allow_extra_args(false);
  static JsonOut t_out;
  t_out.add(train, t.json);
  train->callback([] {
    t_out.check(t.json, {t.config});
    bench::bench_train(t);
  });

  static bench::MemoryOptions m;
  auto* memory = bench->add_subcommand(
      "memory", "One rank's tensor memory per category of the training step (CPU; torchrun for Gloo ranks) vs `rwkv plan`");
  memory->add_option("config", m.config, "run config YAML, or one with only a model: section")->required();
  add_step_shape(memory, m.micro_batch, m.ctx, m.segment);
  memory->add_option_function<int64_t>(
      "--zero-stage", [](const int64_t& v) { m.zero_stage = v; }, "train.zero_stage (default: the config's)");
  memory->add_option("--accum", m.accum, "micro-batches per rank")->capture_default_str();
  memory->add_option("--set", m.sets, "override a config field: section.key=value")->allow_extra_args(false);
  static JsonOut m_out;
  m_out.add(memory, m.json);
  memory->callback([] {
    m_out.check(m.json, {m.config});
    bench::bench_memory(m);
  });

  static bench::LossOptions l;
  auto* loss = bench->add_subcommand(
      "loss", "The training loss (fused cross-entropy + L2Wrap) vs the unfused formulation: time, memory");
  loss->add_option("--rows", l.rows, "token positions (B*T)")->capture_default_str();
  loss->add_option("--vocab", l.vocab, "vocabulary size")->capture_default_str();
  loss->add_option("--factor", l.factor, "L2Wrap factor")->capture_default_str();
  loss->add_option("--runs", l.runs, "timed runs")->capture_default_str();
  loss->add_option("--warmup", l.warmup, "untimed runs first")->capture_default_str();
  loss->add_option("--device", l.device, "cpu or cuda[:N]")->check(device_name)->capture_default_str();
  loss->add_option("--dtype", l.dtype, "logits dtype")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  static JsonOut l_out;
  l_out.add(loss, l.json);
  loss->callback([] {
    l_out.check(l.json, {});
    bench::bench_loss(l);
  });

  static bench::PredictOptions p;
  auto* predict = bench->add_subcommand(
      "predict",
      "PREDICTED (not measured) GPU step time and MFU of the run `bench train` takes, from a cost model and the "
      "kernel census");
  predict->add_option("config", p.config, "run config YAML, or one with only a model: section")->required();
  predict->add_option_function<int64_t>(
      "--micro-batch", [](const int64_t& v) { p.micro_batch = v; }, "sequences per micro-batch (default: the config's)")
      ->check(CLI::PositiveNumber);
  predict->add_option_function<int64_t>(
      "--ctx", [](const int64_t& v) { p.ctx = v; }, "tokens per sequence (default: the config's first stage)")
      ->check(CLI::PositiveNumber);
  predict->add_option("--set", p.sets, "override a config field: section.key=value")->allow_extra_args(false);
  predict->add_option("--gpu", p.gpu, "the assumed machine the flags below amend")
      ->check(CLI::IsMember({"h100", "h200"}))
      ->capture_default_str();
  predict->add_option_function<double>(
      "--peak-tflops", [](const double& v) { p.peak_tflops = v; }, "measured GEMM rate, TFLOP/s (bench train's GEMMs alone)")
      ->check(finite_positive);
  predict->add_option_function<double>(
      "--bandwidth-gbs", [](const double& v) { p.bandwidth_gbs = v; }, "measured memory bandwidth, GB/s read + written")
      ->check(finite_positive);
  predict->add_option_function<double>(
      "--launch-us", [](const double& v) { p.launch_us = v; }, "overhead per kernel launch, microseconds")
      ->check(finite_non_negative);
  predict->add_option_function<std::string>(
      "--wkv-chunk",
      [](const std::string& v) {
        try {
          p.wkv_chunk = kernels::wkv_chunk_override(v.c_str());
        } catch (const std::invalid_argument&) {
          throw CLI::ValidationError("--wkv-chunk", "expected auto or a non-negative integer, got '" + v + "'");
        }
      },
      "WKV kernels: auto (kernels/wkv_schedule.h's choice, as the CUDA op makes it), 0 (sequential) or tokens per "
      "chunk, as RWKV_WKV_CHUNK");
  static JsonOut p_out;
  p_out.add(predict, p.json);
  predict->callback([] {
    p_out.check(p.json, {p.config});
    bench::bench_predict(p);
  });

  static bench::GenerateOptions g;
  auto* gen = bench->add_subcommand("generate", "RNN-mode generation tokens/s and memory after given contexts");
  gen->add_option("source", g.source, "YAML config (random weights), .pth/.safetensors/HF folder, or checkpoint dir")
      ->required();
  gen->add_option("--ctx", g.ctx, "context lengths, comma-separated")->delimiter(',')->capture_default_str();
  gen->add_option("--tokens", g.tokens, "timed generated tokens per context")->capture_default_str();
  gen->add_option("--chunk", g.chunk, "prefill chunk (tokens per parallel-mode call)")->capture_default_str();
  gen->add_option("--warmup", g.warmup, "untimed generated tokens first")->capture_default_str();
  gen->add_option("--device", g.device, "cpu or cuda[:N]")->check(device_name)->capture_default_str();
  static JsonOut g_out;
  g_out.add(gen, g.json);
  gen->callback([] {
    g_out.check(g.json, {g.source});
    bench::bench_generate(g);
  });
}

}  // namespace rwkv::cli
