#include "trainer/dist/memory_plan.h"

#include <fmt/format.h>

#include <cmath>

namespace rwkv {

std::string to_string(Sharding s) {
  switch (s) {
    case Sharding::DDP: return "DDP";
    case Sharding::ZeRO1: return "ZeRO-1";
    case Sharding::ZeRO2: return "ZeRO-2";
  }
  return "?";
}

Sharding sharding_of(int64_t zero_stage) {
  return zero_stage >= 2 ? Sharding::ZeRO2 : zero_stage == 1 ? Sharding::ZeRO1 : Sharding::DDP;
}

// By the same rule as the model (rwkv/README.md "Shapes" with A, F general):
// emb + head (2VD), per block: 4 att matrices (3AD + AD), ffn key/value (2FD), ffn receptance
// (D²), time_* (2A + 5D), LayerNorms (4D), plus ln0 (2D) and ln_out (2D).
double planned_parameter_count(const ModelConfig& m) {
  const double D = m.n_embd, A = m.att(), F = m.ffn(), V = m.vocab_size, L = m.n_layer;
  return 2 * V * D + L * (4 * A * D + 2 * F * D + D * D + 2 * A + 5 * D + 4 * D) + 4 * D;
}

int64_t block_activation_elems_per_token(const ModelConfig& m) {
  const int64_t D = m.n_embd, A = m.att(), F = m.ffn();
  // ln1 and ln2 keep their inputs (the residual stream).
  const int64_t norms = 2 * D;
  // TimeMix: the normed x and its shift (for the μ gradients), the three mixes (inputs of key,
  // value, receptance), k and v (WKV inputs), WKV's y and r (the fused gate's inputs; it recomputes
  // sigmoid(r)), and the input of `output`.
  const int64_t att = 2 * D + 3 * D + 2 * A + A + A + A;
  // ChannelMix: x and its shift, the two mixes, k (the fused relu²'s input), relu(k)² (input of
  // `value`), r and value(·) (the fused gate's inputs).
  const int64_t ffn = 2 * D + 2 * D + F + F + D + D;
  return norms + att + ffn;
}

MemoryEstimate estimate_memory(const PlanRequest& req, Sharding sharding) {
  const ModelConfig& m = req.model;
  const double P = planned_parameter_count(m);
  const double N = req.gpus;
  // With segments the graph holds one segment at a time (trainer/train/segments.h).
  const int64_t segment = req.segment_len > 0 && req.segment_len < req.ctx_len ? req.segment_len : req.ctx_len;
  const double tokens = static_cast<double>(req.micro_batch) * segment;
  const double boundaries = static_cast<double>((req.ctx_len + segment - 1) / segment - 1);
  const bool mixed = req.compute_bytes < 4;

  MemoryEstimate e;
  e.sharding = sharding;
  e.weights = P * req.compute_bytes;
  const double master = mixed ? 4 * P : 0;
  const double adam = 8 * P;
  const double grads = 4 * P;
  const double shard = sharding == Sharding::DDP ? 1.0 : 1.0 / N;
  e.master = master * shard;
  e.adam = adam * shard;
  e.grads = sharding == Sharding::ZeRO2 ? grads / N : sharding == Sharding::ZeRO1 ? grads + grads / N : grads;
  // Collective buffers (trainer/dist/grad_sync.h, parallel_optimizer.cpp): DDP's gradients live
  // in its all-reduce buckets (counted as grads).
  // The ZeRO stages keep up to 4 buckets' collectives in flight while packing a fifth: ZeRO-2
  // reduce-scatters fp32 buckets (each with its part) during backward, ZeRO-1 all-reduces them
  // after it; both then all-gather the updated parameters in place (a bucket each, compute dtype).
  const double bucket = std::min(req.bucket_bytes, grads);
  const double buffers = std::min(5.0, std::ceil(grads / bucket));  // no more than there are buckets
  const double gather = buffers * bucket * req.compute_bytes / 4;
  if (sharding == Sharding::ZeRO1) e.update_buffers = std::max(buffers * bucket, gather);
  if (sharding == Sharding::ZeRO2) {
    // The head weight comes last in the flat view and its gradient first in backward: it fills
    // the last buckets at once, while every activation is still alive.
    const double head_buckets = std::min(buffers, std::ceil(4.0 * m.vocab_size * m.n_embd / bucket));
    e.staging = buffers * (bucket + bucket / N);
    e.head_staging = head_buckets * (bucket + bucket / N);
    e.update_buffers = gather;
  }

  const double per_block = static_cast<double>(block_activation_elems_per_token(m)) * req.compute_bytes;
  // emb output and ln0 in/out, ln_out in/out: 5D per token besides the blocks.
  const double outside = 5.0 * m.n_embd * req.compute_bytes;
  e.activations = tokens * (m.n_layer * per_block + outside);
  // Checkpointing keeps each block's input and recomputes one block at a time in backward.
  e.activations_ckpt = tokens * (m.n_layer * m.n_embd * req.compute_bytes + per_block + outside);
  e.block = tokens * per_block;
  // The WKV backward's (3, B, T, A) fp32 workspace (rwkv/wkv.h) and the gradients of the block's
  // input and output.
  e.block_backward = tokens * (3.0 * m.att() * 4 + 2.0 * m.n_embd * req.compute_bytes);
  // The logits in compute precision: the fused cross-entropy keeps them and writes their gradient
  // over them (kernels/README.md "Cross-entropy and L2Wrap"); then the head weight's gradient.
  e.head = tokens * m.vocab_size * req.compute_bytes;
  e.incoming = static_cast<double>(m.vocab_size) * m.n_embd * req.compute_bytes;
  // Token-shift inputs of att and ffn (D each), aa, bb, pp (A each), kept as fp32 copies.
  e.boundaries = boundaries * req.micro_batch * m.n_layer * (2.0 * m.n_embd + 3.0 * m.att()) * 4;
  return e;
}

std::string format_plan(const PlanRequest& req, double gpu_mem_bytes, double reserve_bytes) {
  const double GB = 1e9;
  std::string out = fmt::format(
      "model: L={} D={} V={}  |  {} GPUs × {:.0f} GB  |  micro-batch {} × ctx {}{}  |  compute {}\n",
      req.model.n_layer, req.model.n_embd, req.model.vocab_size, req.gpus, gpu_mem_bytes / GB,
      req.micro_batch, req.ctx_len,
      req.segment_len > 0 && req.segment_len < req.ctx_len ? fmt::format(" in segments of {}", req.segment_len) : "",
      req.compute_bytes == 2 ? "bf16" : "fp32");
  out += fmt::format("{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>10}  {}\n", "sharding",
                     "ckpt", "weights", "grads", "master", "adam", "buffers", "activations", "head",
                     "total GB", "fits");
  std::string recommendation;
  for (bool ckpt : {false, true}) {
    for (Sharding s : {Sharding::DDP, Sharding::ZeRO1, Sharding::ZeRO2}) {
      const MemoryEstimate e = estimate_memory(req, s);
      const double total = e.total(ckpt);
      const bool fits = total + reserve_bytes <= gpu_mem_bytes;
      out += fmt::format("{:<8} {:>5} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>11.2f} {:>9.2f} {:>10.2f}  {}\n",
                         to_string(s), ckpt ? "yes" : "no", e.weights / GB, e.grads / GB,
                         e.master / GB, e.adam / GB,
                         std::max(e.staging, e.update_buffers) / GB,
                         (ckpt ? e.activations_ckpt : e.activations) / GB, (e.head + e.incoming) / GB,
                         total / GB, fits ? "yes" : "no");
      if (fits && recommendation.empty()) {
        recommendation = to_string(s) + (ckpt ? " with activation checkpointing" : " without activation checkpointing");
      }
    }
  }
  out += "recommended: " +
         (recommendation.empty()
              ? std::string("nothing fits: lower micro_batch, ctx_len or segment_len, or use more GPUs")
              : recommendation) +
         fmt::format(" (reserve {:.1f} GB for the CUDA context and allocator)\n", reserve_bytes / GB);
  return out;
}

}  // namespace rwkv
