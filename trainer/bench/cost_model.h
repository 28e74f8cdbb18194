#pragma once
// The cost model of `rwkv bench predict`: the expected time of one training step on a GPU, from
// what the CPU can count. A prediction, not a measurement; the GPU bundle prints it next to the
// measured step (scripts/gpu-bundle/run.sh).
//
// A phase's time is   flops / GEMM rate + bytes / bandwidth + launches × launch overhead + latency:
// the GEMMs at the machine's achievable GEMM rate (their memory traffic hidden under their
// arithmetic), everything else at its bandwidth, every kernel paying one launch. The additive form
// assumes nothing overlaps: an eager step issues its kernels one after another on one stream and
// a small kernel is bound by its launch. Where the counts come from:
//   - GEMM FLOPs: the model's own 6·(2-D weight elements)·tokens (rwkv/model.h
//     forward_flops_per_token, the same count MFU uses in `rwkv bench train`), plus the blocks'
//     forward again under activation checkpointing;
//   - the blocks' launches and bytes: the kernel census (trainer/bench/op_census.h) of one block
//     with the step's parameter dtype (bf16 on CUDA), counted in this process for this config, at
//     two token counts so that the bytes split into a part per token and a part per call (weight
//     gradients, the WKV's per-channel terms): the prediction follows the code as kernels are fused;
//   - the WKV op: its census bytes, or kernels/wkv_schedule.h's model of the kernels the CUDA op
//     chooses for the shape (sequential or chunked: dependency chain, instruction issue, traffic),
//     whichever is longer;
//   - the embedding, ln_out and the fused loss, and the optimizer (fp32 gradient sums and masters
//     behind bf16 parameters, trainer/dist/grad_store.h): hand counts of their bytes (in
//     cost_model.cpp), not census: they sit outside the block;
//   - one host sync per step (trainer/train/train_step.h reads the loss and the norm once).
// Left out: the GEMMs' own efficiency at small shapes (pass the rate measured at the model's shapes,
// `rwkv bench train`'s "GEMMs alone"), kernels overlapping or running concurrently, L2 cache hits
// (the census bytes are a lower bound on traffic), CPU kernels whose op sequence differs from CUDA's,
// the extra forward of `segment_grad: exact` segments, and more than one rank.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/wkv_schedule.h"
#include "rwkv/model_config.h"

namespace rwkv::bench {

// The machine as the model sees it. known_gpu() gives assumed figures; flags replace them with
// measured ones.
struct GpuModel {
  std::string name;
  double gemm_tflops = 0;        // achievable dense bf16 GEMM rate, TFLOP/s
  double table_tflops = 0;       // the datasheet's dense bf16 peak (the usual MFU denominator)
  double bandwidth_gbs = 0;      // achievable memory bandwidth, GB/s of bytes read + written
  double launch_us = 0;          // per kernel launch
  double sync_us = 0;            // per host read of a device value
  double clock_ghz = 0;          // SM clock, for the WKV schedule's cycles
  // The WKV schedule's figures; its bytes per SM cycle follow bandwidth_gbs and clock_ghz.
  kernels::WkvGpu wkv;
};

// "h100" (SXM) or "h200": the assumed figures (sources in cost_model.cpp); none for other names.
std::optional<GpuModel> known_gpu(const std::string& name);

// Launches and non-GEMM bytes of one pass of one block: bytes = per_token × tokens + per_call.
// The WKV op is kept apart from the rest (its own time model).
struct PassTraffic {
  int64_t gemm_launches = 0, other_launches = 0, wkv_launches = 0;
  double bytes_per_token = 0, bytes_per_call = 0;          // non-GEMM, non-WKV
  double wkv_bytes_per_token = 0, wkv_bytes_per_call = 0;
};
struct BlockTraffic {
  PassTraffic forward, backward;
};

// The census of one block (census_block, B = 1) with bf16 parameters (`bf16`) or fp32 at ctx
// `t1` and `t2` > t1, fitted as per token + per call; launches are those at t2. Seconds at 1.5B
// shapes (the block is built and run on the CPU at a few dozen tokens).
BlockTraffic block_traffic(const ModelConfig& config, int64_t t1, int64_t t2, bool bf16);

// What the model needs of the network, from the model built on torch::kMeta (nothing allocated).
struct ModelFigures {
  int64_t n_layer = 0, n_embd = 0, att = 0, vocab = 0;
  int64_t parameters = 0, parameter_tensors = 0;
  double forward_flops_per_token = 0;  // rwkv/model.h: 2 × the 2-D weights but the embedding's
};
ModelFigures model_figures(const ModelConfig& config);

struct StepShape {
  int64_t micro_batch = 0, ctx = 0, micro_batches = 1;  // micro_batches: per step (grad_accum)
  bool activation_checkpointing = false;                // the blocks' forward runs twice
  bool bf16 = false;  // bf16 parameters with fp32 masters and gradient sums, else all fp32
  std::optional<int64_t> wkv_chunk;  // the WKV kernels (0: sequential); unset: the schedule's policy
};

struct PhaseCost {
  std::string name;
  double flops = 0, bytes = 0, launches = 0;
  double latency_s = 0;  // time that is neither arithmetic, traffic nor launches (syncs, WKV's chain)
  double seconds(const GpuModel& gpu) const;
};

struct StepPrediction {
  std::vector<PhaseCost> phases;
  double step_s = 0, tokens = 0, model_flops = 0;  // model_flops: 3 × forward FLOPs × tokens (MFU's)
  double tokens_per_s = 0, mfu_vs_gemm = 0, mfu_vs_table = 0;
  int64_t wkv_chunk = 0;  // tokens per chunk the CUDA WKV op would choose (0: sequential kernels)
};

StepPrediction predict_step(const ModelFigures& model, const BlockTraffic& block, const StepShape& shape,
                            const GpuModel& gpu);

}  // namespace rwkv::bench
