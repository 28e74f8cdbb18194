#include "trainer/bench/cost_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "rwkv/model.h"
#include "trainer/bench/op_census.h"

namespace rwkv::bench {

std::optional<GpuModel> known_gpu(const std::string& name) {
  // ASSUMPTIONS, each replaced by a flag once the GPU bundle has measured it:
  //   gemm_tflops: ../shared/GPU.md saw a bf16 8192³ GEMM at ~790 TFLOP/s on the H200; the H100 SXM
  //     has the same GH100 compute and clocks, so the same figure (datasheets: 989 dense bf16 both);
  //   bandwidth_gbs: GPU.md saw a device-to-device copy at ~4.3 TB/s on the H200 (4.8 TB/s HBM3e
  //     datasheet, 90%); the H100 SXM at the same 90% of its datasheet's 3.35 TB/s HBM3;
  //   launch_us: 4 µs per eager LibTorch op (dispatch, autograd bookkeeping and cudaLaunchKernel on
  //     the host; the step's kernels are small enough that the host is the bound);
  //   sync_us: 20 µs per host read (the copy's round trip, then the emptied queue refilling);
  //   clock_ghz: 1.98 GHz, the datasheets' boost clock (H100 SXM and H200);
  //   wkv: kernels/wkv_schedule.h assumed_wkv_gpu (132 SMs, 100 cycles a WKV step, occupancy).
  GpuModel g;
  g.table_tflops = 989;
  g.gemm_tflops = 790;
  g.launch_us = 4;
  g.sync_us = 20;
  g.clock_ghz = 1.98;
  g.wkv = kernels::assumed_wkv_gpu();
  if (name == "h100") {
    g.name = "H100 SXM (assumed figures)";
    g.bandwidth_gbs = 3000;
  } else if (name == "h200") {
    g.name = "H200 (assumed figures)";
    g.bandwidth_gbs = 4300;
  } else {
    return std::nullopt;
  }
  return g;
}

namespace {

bool is_wkv(const std::string& op) { return op.rfind("rwkv::wkv", 0) == 0; }

struct PassCount {
  int64_t gemm_launches = 0, other_launches = 0, wkv_launches = 0;
  double other_bytes = 0, wkv_bytes = 0;
};

PassCount count(const OpCensus& c) {
  PassCount p;
  p.gemm_launches = c.gemm().launches;
  for (const auto& [op, t] : c.by_op) {
    if (is_wkv(op)) {
      p.wkv_launches += t.launches;
      p.wkv_bytes += static_cast<double>(t.bytes);
    }
  }
  p.other_launches = c.other().launches - p.wkv_launches;
  p.other_bytes = static_cast<double>(c.other().bytes) - p.wkv_bytes;
  return p;
}

// bytes(t) = per_token·t + per_call through (t1, b1) and (t2, b2).
PassTraffic fit(const PassCount& a, const PassCount& b, int64_t t1, int64_t t2) {
  const double dt = static_cast<double>(t2 - t1);
  PassTraffic p;
  p.gemm_launches = b.gemm_launches;
  p.other_launches = b.other_launches;
  p.wkv_launches = b.wkv_launches;
  p.bytes_per_token = (b.other_bytes - a.other_bytes) / dt;
  p.bytes_per_call = a.other_bytes - p.bytes_per_token * static_cast<double>(t1);
  p.wkv_bytes_per_token = (b.wkv_bytes - a.wkv_bytes) / dt;
  p.wkv_bytes_per_call = a.wkv_bytes - p.wkv_bytes_per_token * static_cast<double>(t1);
  return p;
}

double pass_bytes(const PassTraffic& p, double tokens) { return p.bytes_per_token * tokens + p.bytes_per_call; }
double wkv_bytes(const PassTraffic& p, double tokens) { return p.wkv_bytes_per_token * tokens + p.wkv_bytes_per_call; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

BlockTraffic block_traffic(const ModelConfig& config, int64_t t1, int64_t t2, bool bf16) {
  if (t1 < 1 || t2 <= t1) throw std::invalid_argument("block_traffic: need 1 <= t1 < t2");
  const torch::ScalarType dtype = bf16 ? torch::kBFloat16 : torch::kFloat32;
  const BlockCensus a = census_block(config, 1, t1, dtype), b = census_block(config, 1, t2, dtype);
  return {fit(count(a.forward), count(b.forward), t1, t2), fit(count(a.backward), count(b.backward), t1, t2)};
}

ModelFigures model_figures(const ModelConfig& config) {
  const RWKV model(config, torch::TensorOptions().device(torch::kMeta));
  ModelFigures f;
  f.n_layer = config.n_layer;
  f.n_embd = config.n_embd;
  f.att = config.att();
  f.vocab = config.vocab_size;
  f.parameters = parameter_count(*model);
  f.parameter_tensors = static_cast<int64_t>(model->parameters().size());
  f.forward_flops_per_token = static_cast<double>(forward_flops_per_token(*model));
  return f;
}

double PhaseCost::seconds(const GpuModel& gpu) const {
  return flops / (gpu.gemm_tflops * 1e12) + bytes / (gpu.bandwidth_gbs * 1e9) + launches * gpu.launch_us * 1e-6 +
         latency_s;
}

StepPrediction predict_step(const ModelFigures& m, const BlockTraffic& block, const StepShape& s, const GpuModel& gpu) {
  const double D = static_cast<double>(m.n_embd), V = static_cast<double>(m.vocab), P = static_cast<double>(m.parameters);
  const double N = static_cast<double>(s.micro_batch * s.ctx);  // tokens per micro-batch
  const double micro = static_cast<double>(s.micro_batches), L = static_cast<double>(m.n_layer);
  const double passes = s.activation_checkpointing ? 2 : 1;  // forwards of each block per micro-batch
  const PassTraffic &fw = block.forward, &bw = block.backward;
  StepPrediction out;
  out.tokens = N * micro;
  out.model_flops = 3 * m.forward_flops_per_token * out.tokens;

  // Every matrix product: 3× the forward's (∂x and ∂W for each y = xWᵀ), plus the blocks' forward
  // again under checkpointing (the head's 2·D·V per token is not recomputed); the head's three
  // launches with the blocks'.
  PhaseCost gemm{"GEMMs (blocks + head, fwd + bwd)"};
  const double block_forward_flops = m.forward_flops_per_token - 2 * D * V;
  gemm.flops = out.model_flops + (passes - 1) * block_forward_flops * out.tokens;
  gemm.launches = micro * (L * static_cast<double>(passes * fw.gemm_launches + bw.gemm_launches) + 3);

  PhaseCost elementwise{"blocks' other kernels (census)"};
  elementwise.bytes = micro * L * (passes * pass_bytes(fw, N) + pass_bytes(bw, N));
  elementwise.launches = micro * L * static_cast<double>(passes * fw.other_launches + bw.other_launches);

  // WKV: its census bytes at the bandwidth, or the schedule's model of the kernels the CUDA op
  // would run (kernels/wkv_schedule.h: the chunk it chooses, each launch the longest of its
  // dependency chain, its instruction issue and its traffic), whichever is longer.
  PhaseCost wkv{"WKV (fwd + bwd, bytes or schedule)"};
  wkv.bytes = micro * L * (passes * wkv_bytes(fw, N) + wkv_bytes(bw, N));
  wkv.launches = micro * L * static_cast<double>(passes * fw.wkv_launches + bw.wkv_launches);
  kernels::WkvGpu wkv_gpu = gpu.wkv;
  wkv_gpu.bytes_per_sm_cycle = gpu.bandwidth_gbs / (gpu.clock_ghz * static_cast<double>(wkv_gpu.sms));
  const kernels::WkvShape wkv_shape{s.micro_batch, s.ctx, m.att, s.bf16 ? 2 : 4};
  out.wkv_chunk = kernels::wkv_chunk_for(wkv_shape, s.wkv_chunk, wkv_gpu);
  const kernels::WkvCycles cycles = kernels::wkv_cycles(wkv_shape, out.wkv_chunk, wkv_gpu);
  const double schedule_s = micro * L * (passes * cycles.forward + cycles.backward) / (gpu.clock_ghz * 1e9);
  wkv.latency_s = std::max(0.0, schedule_s - wkv.bytes / (gpu.bandwidth_gbs * 1e9));

  // Outside the blocks, per micro-batch, hand-counted (the census covers a block only) in bytes of
  // the parameters' dtype e per element; per token forward: the embedding rows read and written
  // (2eD), ln0 and ln_out (2eD each), the fused loss reading the logits (eV); backward: the loss
  // reading the logits and writing their gradient once (2eV, kernels/README.md "Cross-entropy and
  // L2Wrap"), both LayerNorms' backward (3eD each), the embedding's gradient rows (2eD). Per call
  // the embedding gradient's zeroed V×D table (eVD). Launches: 7 forward (gather, 2 LayerNorms, the
  // loss's 2 and its sum, the tokens' copy), 7 backward (the loss's, 2 LayerNorms', the embedding's 4).
  const double e = s.bf16 ? 2 : 4;
  PhaseCost outside{"embedding, ln0, ln_out, loss"};
  outside.bytes = micro * (N * (14 * e * D + 3 * e * V) + e * V * D);
  outside.launches = micro * 14;

  // The update, bytes per parameter. bf16 (trainer/dist/grad_store.h Mode::fp32): each micro-batch's
  // bf16 gradient goes into an fp32 sum, the first copied (2 + 4), the others added (2 + 4 + 4),
  // one launch per tensor each; after Adam the fp32 masters are copied into the bf16 parameters
  // (4 + 2, one launch per tensor; trainer/dist/parallel_optimizer.cpp). fp32: autograd's .grad is
  // the sum, each later micro-batch adding into it (4 + 4 + 4). Both: the norm reads the sums (4),
  // clipping scales them (8: assumed to clip, as early training does at grad_clip 1.0), fused AdamW
  // reads master, gradient and both moments and writes three (28) (trainer/optim/optimizer.h).
  // Multi-tensor ops (norm, scale, AdamW) launch as LibTorch's multi_tensor_apply splits them
  // (ATen/native/cuda/MultiTensorApply.cuh: at most 36 tensors of 4 lists, or 320 chunks of 65536
  // elements, per launch); the norm's stack, cast, square, sum, sqrt and the read's stack and copy (7).
  PhaseCost update{"grad sums, norm, clip, fused AdamW"};
  const double tensors = static_cast<double>(m.parameter_tensors);
  const double per_multi_tensor = static_cast<double>(
      std::max(ceil_div(m.parameter_tensors, 36), ceil_div(m.parameters, int64_t{65536} * 320)));
  update.bytes = P * (s.bf16 ? 6 + 10 * (micro - 1) + 40 + 6 : 12 * (micro - 1) + 40);
  update.launches = tensors * (s.bf16 ? micro + 1 : micro - 1) + 3 * per_multi_tensor + 7;

  PhaseCost sync{"host sync (one read per step)"};
  sync.latency_s = gpu.sync_us * 1e-6;

  out.phases = {gemm, elementwise, wkv, outside, update, sync};
  for (const PhaseCost& p : out.phases) out.step_s += p.seconds(gpu);
  out.tokens_per_s = out.tokens / out.step_s;
  out.mfu_vs_gemm = out.model_flops / out.step_s / (gpu.gemm_tflops * 1e12);
  out.mfu_vs_table = out.model_flops / out.step_s / (gpu.table_tflops * 1e12);
  return out;
}

}  // namespace rwkv::bench
