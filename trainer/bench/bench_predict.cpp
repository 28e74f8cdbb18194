// `rwkv bench predict CONFIG`: the cost model's expected GPU step (trainer/bench/cost_model.h) for
// the run `rwkv bench train CONFIG` times with the same --micro-batch, --ctx and --set, printed
// per phase and, with --json, written for the GPU bundle to set next to its measured step. The
// blocks' kernels are counted here, on the CPU, by the census of this build's code.
#include <fmt/format.h>

#include "trainer/bench/bench.h"
#include "trainer/bench/bench_train.h"
#include "trainer/bench/cost_model.h"
#include "trainer/train/train_loop.h"

namespace rwkv::bench {
namespace {

// The census runs one block at these two contexts (B = 1): small enough for seconds at 1.5B shapes,
// two of them to split bytes into per token and per call (cost_model.h block_traffic).
constexpr int64_t kCensusCtx1 = 16, kCensusCtx2 = 32;

nlohmann::json pass_json(const PassTraffic& p) {
  return {{"gemm_launches", p.gemm_launches},         {"other_launches", p.other_launches},
          {"wkv_launches", p.wkv_launches},           {"bytes_per_token", p.bytes_per_token},
          {"bytes_per_call", p.bytes_per_call},       {"wkv_bytes_per_token", p.wkv_bytes_per_token},
          {"wkv_bytes_per_call", p.wkv_bytes_per_call}};
}

}  // namespace

void bench_predict(const PredictOptions& o) {
  std::optional<GpuModel> known = known_gpu(o.gpu);
  if (!known) throw std::invalid_argument("bench predict: --gpu " + o.gpu + ": expected h100 or h200");
  GpuModel gpu = *known;
  const bool measured = o.peak_tflops || o.bandwidth_gbs || o.launch_us;
  if (o.peak_tflops) gpu.gemm_tflops = *o.peak_tflops;
  if (o.bandwidth_gbs) gpu.bandwidth_gbs = *o.bandwidth_gbs;
  if (o.launch_us) gpu.launch_us = *o.launch_us;
  if (measured) gpu.name += ", with the figures given as flags";

  // The run `rwkv bench train` would time, with the CUDA step's parameter dtype (bf16 unless the
  // config or a --set says fp32; trainer/train/train_step.h compute_dtype): the CPU device only
  // keeps the config from asking for a GPU here.
  TrainOptions t;
  t.config = o.config;
  t.micro_batch = o.micro_batch;
  t.ctx = o.ctx;
  t.sets = o.sets;
  t.device = "cpu";
  const trainer::RunConfig cfg = bench_train_config(t);
  const trainer::Stage& st = cfg.stages.front();
  const bool bf16 = cfg.train.precision != trainer::Precision::fp32;
  const StepShape shape{st.micro_batch, st.ctx_len, trainer::micro_batches_per_rank(cfg, 0, 1),
                        cfg.train.activation_checkpointing, bf16, o.wkv_chunk};

  const ModelFigures model = model_figures(cfg.model);
  const BlockTraffic block = block_traffic(cfg.model, kCensusCtx1, kCensusCtx2, bf16);
  const StepPrediction p = predict_step(model, block, shape, gpu);

  fmt::print(
      "PREDICTED GPU training step, not measured (trainer/bench/cost_model.h): {} (L={} D={} V={}), {} micro-batch(es) "
      "of {} x ctx {} = {} tokens, {}, activation checkpointing {}\n",
      cfg.file, model.n_layer, model.n_embd, model.vocab, shape.micro_batches, shape.micro_batch, shape.ctx, p.tokens,
      bf16 ? "bf16 parameters (fp32 masters)" : "fp32", shape.activation_checkpointing ? "on" : "off");
  if (st.segment() < st.ctx_len)
    fmt::print("  not modeled: segments of {} tokens (the extra pass of exact segments, the boundary states)\n",
               st.segment());
  fmt::print("  machine: {}: GEMM {} TFLOP/s, bandwidth {} GB/s, launch {} us, sync {} us, {} SMs at {} GHz, WKV step "
             "{} cycles, {} WKV threads resident\n",
             gpu.name, gpu.gemm_tflops, gpu.bandwidth_gbs, gpu.launch_us, gpu.sync_us, gpu.wkv.sms, gpu.clock_ghz,
             gpu.wkv.cycles_per_step, gpu.wkv.resident_threads);
  fmt::print("  WKV kernels at B={} T={} C={} ({}): {}\n", shape.micro_batch, shape.ctx, model.att,
             o.wkv_chunk ? "--wkv-chunk" : "kernels/wkv_schedule.h's policy",
             p.wkv_chunk > 0 ? fmt::format("chunked, {} tokens a chunk", p.wkv_chunk) : "sequential");
  const auto census_line = [](const char* pass, const PassTraffic& c) {
    fmt::print("  census of a block {}: {} GEMM + {} other + {} WKV launches, {:.1f} B/token + {:.0f} B/call; WKV "
               "{:.1f} B/token\n",
               pass, c.gemm_launches, c.other_launches, c.wkv_launches, c.bytes_per_token, c.bytes_per_call,
               c.wkv_bytes_per_token);
  };
  fmt::print("  (the census ran one block on the CPU at ctx {} and {}, {})\n", kCensusCtx1, kCensusCtx2,
             bf16 ? "bf16" : "fp32");
  census_line("forward", block.forward);
  census_line("backward", block.backward);
  fmt::print("  {:<44} {:>10} {:>10} {:>9} {:>9} {:>6}\n", "phase", "GFLOP", "MB", "launches", "ms", "share");
  nlohmann::json phases = nlohmann::json::array();
  for (const PhaseCost& ph : p.phases) {
    const double s = ph.seconds(gpu);
    fmt::print("  {:<44} {:10.1f} {:10.1f} {:9.0f} {:9.3f} {:5.1f}%\n", ph.name, ph.flops / 1e9, ph.bytes / 1e6,
               ph.launches, s * 1e3, 100 * s / p.step_s);
    phases.push_back({{"name", ph.name}, {"flops", ph.flops}, {"bytes", ph.bytes}, {"launches", ph.launches},
                      {"latency_s", ph.latency_s}, {"ms", s * 1e3}});
  }
  fmt::print("  predicted step {:.2f} ms, {:.0f} tokens/s, MFU {:.1f}% vs the GEMM rate ({} TFLOP/s), {:.1f}% vs the "
             "datasheet's dense bf16 peak ({} TFLOP/s)\n",
             p.step_s * 1e3, p.tokens_per_s, 100 * p.mfu_vs_gemm, gpu.gemm_tflops, 100 * p.mfu_vs_table,
             gpu.table_tflops);
  write_json(o.json, {{"bench", "predict"},
                      {"config", cfg.file},
                      {"n_layer", model.n_layer},
                      {"n_embd", model.n_embd},
                      {"vocab_size", model.vocab},
                      {"micro_batch", shape.micro_batch},
                      {"ctx", shape.ctx},
                      {"grad_accum", shape.micro_batches},
                      {"tokens", shape.micro_batch * shape.ctx * shape.micro_batches},
                      {"dtype", bf16 ? "bf16" : "fp32"},
                      {"gpu",
                       {{"name", gpu.name},
                        {"gemm_tflops", gpu.gemm_tflops},
                        {"table_tflops", gpu.table_tflops},
                        {"bandwidth_gbs", gpu.bandwidth_gbs},
                        {"launch_us", gpu.launch_us},
                        {"sync_us", gpu.sync_us},
                        {"clock_ghz", gpu.clock_ghz},
                        {"sms", gpu.wkv.sms},
                        {"wkv_cycles_per_step", gpu.wkv.cycles_per_step},
                        {"resident_threads", gpu.wkv.resident_threads}}},
                      {"wkv_chunk", p.wkv_chunk},
                      {"census", {{"ctx", {kCensusCtx1, kCensusCtx2}}, {"forward", pass_json(block.forward)},
                                  {"backward", pass_json(block.backward)}}},
                      {"phases", phases},
                      {"step_ms", p.step_s * 1e3},
                      {"tokens_per_s", p.tokens_per_s},
                      {"mfu_vs_gemm", p.mfu_vs_gemm},
                      {"mfu_vs_table", p.mfu_vs_table}});
}

}  // namespace rwkv::bench
