#pragma once
// Per-GPU memory of a training run, estimated from the model's shape (`rwkv plan`):
// model state under DDP, ZeRO-1 and ZeRO-2, and activations with and without per-block
// activation checkpointing. The activation terms itemise what autograd keeps alive for the
// backward of our forward (rwkv/time_mix.cpp, channel_mix.cpp, model.cpp); they are checked
// against measured peaks of real CPU runs (tests/rwkv/test_block_recompute.cpp).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "rwkv/model_config.h"

namespace rwkv {

enum class Sharding { DDP, ZeRO1, ZeRO2 };
std::string to_string(Sharding s);
// The sharding of train.zero_stage (0: DDP, 1: ZeRO-1, 2: ZeRO-2).
Sharding sharding_of(int64_t zero_stage);

struct PlanRequest {
  ModelConfig model;
  int gpus = 1;
  int64_t micro_batch = 1;  // sequences per GPU per micro-step
  int64_t ctx_len = 1024;
  int64_t segment_len = 0;  // train.segment_len: activations of one segment (0: the whole sample)
  int compute_bytes = 2;    // 2 = bf16 parameters with fp32 masters, 4 = fp32 training
  double bucket_bytes = 25.0 * (1 << 20);  // train.grad_bucket_mb
};

struct MemoryEstimate {
  Sharding sharding = Sharding::DDP;
  // Model state, bytes per GPU.
  // As trainer/dist/parallel_optimizer.h allocates them:
  double weights = 0;     // the module's parameters, in the compute dtype
  double grads = 0;       // fp32 gradient sums: whole under DDP (in the all-reduce buckets with
                          // several ranks), whole plus the reduced shard under
                          // ZeRO-1, only the own shard under ZeRO-2 (held between steps too)
  double master = 0;      // fp32 master weights (0 when compute is fp32: the weights are the master)
  double adam = 0;        // fp32 first and second moments
  double staging = 0;     // ZeRO-2's reduce-scatter buckets, during backward: the most in flight
  double head_staging = 0;  // the part of them the head weight's gradient fills at once, at the
                            // start of backward
  double update_buffers = 0;  // ZeRO's all-reduce (stage 1) and all-gather buckets, after backward
  // Activations of one micro-batch, bytes per GPU.
  double activations = 0;       // everything kept for backward
  double activations_ckpt = 0;  // with per-block checkpointing (block inputs + one block recomputed)
  double block = 0;             // one block's share of `activations` (what a recompute rebuilds)
  double block_backward = 0;    // transient of one block's backward: WKV's fp32 workspace, dx buffers
  double head = 0;              // the logits (V per token, compute dtype), kept for the fused loss's
                                // backward, which writes their gradient over them
  double incoming = 0;          // the head weight's gradient as autograd hands it over (V·D, compute
                                // dtype), before it joins the fp32 sums: it meets the head
  // Segments (trainer/train/segments.h): the activation terms above are one segment's; these are
  // the RNN states saved at the segment boundaries (5 vectors per block and row, fp32).
  double boundaries = 0;

  double state() const { return weights + grads + master + adam + boundaries; }
  // A micro-batch's forward and backward at their peak, above the state: every activation meets
  // the head's buffers at the start of backward without checkpointing; with it they do not meet
  // the recomputed block (the head's gradient is gone before the last block is rebuilt), so the
  // peak is the block inputs plus the larger of the head and a block being rebuilt and
  // differentiated (checked against measured CPU runs, tests/rwkv/test_block_recompute.cpp).
  // ZeRO-2's staging adds to it: the head weight's gradient is copied into its buckets once the
  // head's backward has freed the logits' gradient; later up to all buckets are in flight.
  double backward_peak(bool checkpointing) const {
    const double at_head = incoming + std::max(head, head_staging);
    return checkpointing ? activations_ckpt - block + std::max(at_head, block + block_backward + staging)
                         : activations + std::max(at_head, staging);
  }
  // The update's buffers come after the backward.
  double total(bool checkpointing) const { return state() + std::max(backward_peak(checkpointing), update_buffers); }
};

// The model's parameter count from its shape alone (as a double: no overflow for any shape, and
// no model is built), equal to parameter_count of the built model (rwkv/model.h).
double planned_parameter_count(const ModelConfig& m);

// Elements kept for backward per token by one block (26·D for A = D, F = 4·D).
int64_t block_activation_elems_per_token(const ModelConfig& m);

MemoryEstimate estimate_memory(const PlanRequest& req, Sharding sharding);

// The table `rwkv plan` prints: one row per (sharding, checkpointing), fits or not in
// `gpu_mem_bytes` (leaving `reserve` for the allocator and CUDA context), and a recommendation:
// the least sharding that fits, preferring no checkpointing (it costs a third more compute).
std::string format_plan(const PlanRequest& req, double gpu_mem_bytes, double reserve_bytes);

}  // namespace rwkv
