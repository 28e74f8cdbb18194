#pragma once
// One optimizer step exactly as training takes it (trainer/README.md "Loss", "Optimizer and
// schedule"). run_training (trainer/train/train_loop.h), `rwkv bench train` and the tests all call
// this one, so what is benchmarked and tested is what trains. In two layers:
//   train_step        drops the gradients; for each of this rank's micro-batches asks whether to
//                     stop (agreed over the ranks) and calls forward_backward; then the gradient
//                     sync over the ranks or ZeRO (trainer/dist/parallel_optimizer.h), the global
//                     norm, the non-finite guard, clipping, and Adam at the stage's scheduled
//                     learning rate (trainer/optim/lr_schedule.h).
//   forward_backward  one micro-batch: the forward in the parameters' compute dtype (bf16
//                     parameters with fp32 masters in the optimizer, trainer/dist/parallel_optimizer.h;
//                     activation checkpointing is part of the forward,
//                     trainer/train/trained_model.h), the fused cross-entropy + L2Wrap
//                     (trainer/train/cross_entropy_l2wrap.h), backward of the loss divided by the
//                     rank's micro-batch count — the whole sample at once, or in the stage's
//                     segments carrying the RNN state (trainer/train/segments.h). Before the last
//                     backward the optimizer may start reducing gradient buckets as autograd
//                     produces them.
// Host syncs: one read from the device per step, of the step's mean loss and the gradient norm
// together (the guard and clipping need both); the micro-batches' losses are summed on the
// device, the norm is computed there (trainer/optim/optimizer.h global_grad_norm), and on CUDA the
// tokens go up from pinned memory without waiting. A run of one process asks for a stop before
// each micro-batch without any collective. With several ranks (or a one-rank group) the ranks must
// agree where to stop: the answer before micro-batch m+1 is all-reduced in the background while
// micro-batch m runs and read before m+1 (so the device still has micro-batch m queued while the
// host waits), and the answer before micro-batch 0 at the start of the step: micro_batches reads
// more. A stop is still agreed between micro-batches, so a signal stops a long accumulation
// part-way. StepResult::host_reads counts them (tests/trainer/train/test_train_step_syncs.cpp).
// The optional phase hook is the place where a benchmark may synchronize; training passes none.
#include <torch/torch.h>

#include <functional>
#include <memory>

#include "trainer/config/run_config.h"
#include "trainer/dist/communicator.h"
#include "trainer/dist/parallel_optimizer.h"
#include "trainer/optim/optimizer.h"
#include "trainer/train/segments.h"

namespace rwkv::trainer {

// Where a step is when the phase hook is called: after a micro-batch's forward and loss, after its
// backward, after the optimizer update (sync, the read of loss and norm, guard, clip, Adam).
enum class StepPhase { forward, backward, update };

struct StepHooks {
  // Asked on this rank whether to stop before micro-batch `micro` (0 … micro_batches−1); the ranks
  // stop where any one asks. With a process group it is asked for micro-batch m+1 before m runs.
  std::function<bool(int64_t micro)> stop_before;
  // After the last backward, before the sync and the guard, with the module's parameters, whose
  // .grad holds this rank's accumulated gradients when they train in fp32 under ZeRO stage 0/1
  // (tests inject non-finite values there; bf16 sums and stage 2's shards live in the optimizer).
  // With several ranks and overlapped gradient reduction the buckets are already packed, so a
  // change only reaches a one-process run.
  std::function<void(const NamedTensors& params)> after_backward;
  // Timing (trainer/bench): called at each StepPhase boundary.
  std::function<void(StepPhase)> phase;
};

struct StepResult {
  bool stopped = false;    // a stop was agreed before a micro-batch: nothing applied, gradients dropped
  bool applied = false;    // loss and gradient norm finite: the update was applied
  double loss = 0;         // mean cross-entropy over the global batch (all ranks), without L2Wrap
  double grad_norm = 0;    // of the averaged gradient, before clipping
  double lr = 0;           // the step's base learning rate
  int64_t host_reads = 0;  // device-to-host reads the step made (see the top of this file)
};

// The sum over ranks of one number per rank (through a tensor on `device`: NCCL needs CUDA).
double sum_over_ranks(Communicator& comm, double value, const torch::Device& device);

// The dtype the module's parameters train in: train.precision bf16, or auto on CUDA, gives bf16
// (the fp32 masters stay in the optimizer); fp32, or auto on the CPU, gives fp32.
torch::ScalarType compute_dtype(const RunConfig& config, const torch::Device& device);

class TrainStep {
 public:
  // This rank's rows of micro-batch `micro` of the step: (micro_batch, ctx_len + 1) tokens (any
  // integer dtype, any device: moved to the run's device as int64).
  using Batch = std::function<torch::Tensor(int64_t micro)>;

  // `params`: the model's parameters (fp32, or already in compute_dtype(config, device) as
  // build_trained_model makes them), in the same order on every rank; `forward` runs the model
  // (from_state only for segments). Collective: every rank takes rank 0's parameters, the
  // optimizer (config.optimizer, train.zero_stage / grad_bucket_mb / overlap_grad_reduce) takes
  // its fp32 masters from them, and they are converted to the compute dtype.
  TrainStep(const RunConfig& config, NamedTensors params, StepForward forward, Communicator& comm,
            const torch::Device& device);

  // One step of `stage` at its step `stage_step` (the LR schedule's position) over this rank's
  // `micro_batches` micro-batches (grad_accum / ranks). Collective.
  StepResult train_step(const Stage& stage, int64_t stage_step, int64_t micro_batches, const Batch& batch,
                        const StepHooks& hooks = {});
  // One micro-batch of `stage` (its ctx_len and segments): forward and backward, accumulating
  // into the gradients; returns its loss, a 0-dim fp64 tensor on the device (not read).
  torch::Tensor forward_backward(const torch::Tensor& tokens, const Stage& stage, int64_t micro_batches, bool last,
                          const StepHooks& hooks);

  ParallelOptimizer& optimizer() { return *optimizer_; }
  torch::ScalarType dtype() const { return dtype_; }
  // The module's parameters (in dtype(); the fp32 masters are the optimizer's).
  const NamedTensors& params() const { return params_; }

 private:
  // The norm, the one read of it and of `mean_loss` (0-dim fp64 on the device, averaged over the
  // ranks), the non-finite guard, clipping and Adam, after the gradients were reduced.
  void update(const Stage& stage, const torch::Tensor& mean_loss, StepResult& result);
  // Every device-to-host read of a step goes through here, counted in host_reads_.
  torch::Tensor read_to_host(const torch::Tensor& t);

  NamedTensors params_;
  StepForward forward_;
  SegmentGrad segment_grad_;
  Communicator& comm_;
  torch::Device device_;
  torch::ScalarType dtype_;
  int64_t vocab_;
  double l2wrap_, grad_clip_;
  std::unique_ptr<ParallelOptimizer> optimizer_;
  int64_t host_reads_ = 0;
};

}  // namespace rwkv::trainer
