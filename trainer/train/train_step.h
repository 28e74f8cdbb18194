#pragma once
// One optimizer step exactly as training takes it (trainer/README.md "Loss", "Optimizer and
// schedule"). run_training (trainer/train/train_loop.h), `rwkv bench train` and the tests all call
// this one, so what is benchmarked and tested is what trains. In two layers:
//   train_step        drops the gradients; for each of this rank's micro-batches asks whether to
//                     stop (agreed over the ranks) and calls forward_backward; then the gradient
//                     sync over the ranks or ZeRO (trainer/dist/parallel_optimizer.h), the global
//                     norm, the non-finite guard, clipping, and Adam at the stage's scheduled
//                     learning rate (trainer/optim/lr_schedule.h).
//   forward_backward  one micro-batch: the forward under bf16 autocast on CUDA
//                     (trainer/train/autocast_scope.h; activation checkpointing is part of the
//                     forward, trainer/train/trained_model.h), cross-entropy + L2Wrap
//                     (trainer/train/l2wrap.h), backward of the loss divided by the rank's
//                     micro-batch count — the whole sample at once, or in the stage's segments
//                     carrying the RNN state (trainer/train/segments.h). Before the last backward
//                     the optimizer may start reducing gradient buckets as autograd produces them.
// Host syncs, the same as training has always had: each micro-batch's loss is read (item); with
// several ranks a stop request is agreed before each micro-batch (one all-reduce of one number);
// the global norm and the step's mean loss are read once per step. The optional phase hook is the
// place where a benchmark may synchronize; training passes none.
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
// backward (and the read of its loss), after the optimizer update (sync, guard, clip, Adam).
enum class StepPhase { forward, backward, update };

struct StepHooks {
  // Asked on this rank before micro-batch `micro` (0 … micro_batches−1); the ranks stop where any
  // one asks.
  std::function<bool(int64_t micro)> stop_before;
  // After the last backward, before the sync and the guard, with this rank's accumulated
  // gradients (tests inject non-finite values here). With several ranks and overlapped gradient
  // reduction the buckets are already packed, so a change only reaches a one-process run.
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
};

// The sum over ranks of one number per rank (through a tensor on `device`: NCCL needs CUDA).
double sum_over_ranks(Communicator& comm, double value, const torch::Device& device);

class TrainStep {
 public:
  // This rank's rows of micro-batch `micro` of the step: (micro_batch, ctx_len + 1) tokens (any
  // integer dtype, any device: moved to the run's device as int64).
  using Batch = std::function<torch::Tensor(int64_t micro)>;

  // `params`: the model's fp32 master weights in the same order on every rank; `forward` runs
  // the model (from_state only for segments). The optimizer follows config.optimizer and
  // train.zero_stage / grad_bucket_mb / overlap_grad_reduce; bf16 autocast is on when `device` is
  // CUDA and train.precision is not fp32.
  TrainStep(const RunConfig& config, NamedTensors params, StepForward forward, Communicator& comm,
            const torch::Device& device);

  // One step of `stage` at its step `stage_step` (the LR schedule's position) over this rank's
  // `micro_batches` micro-batches (grad_accum / ranks). Collective.
  StepResult train_step(const Stage& stage, int64_t stage_step, int64_t micro_batches, const Batch& batch,
                        const StepHooks& hooks = {});
  // One micro-batch of `stage` (its ctx_len and segments): forward and backward, accumulating
  // into the gradients; returns its loss.
  double forward_backward(const torch::Tensor& tokens, const Stage& stage, int64_t micro_batches, bool last,
                          const StepHooks& hooks);

  ParallelOptimizer& optimizer() { return *optimizer_; }
  bool bf16_autocast() const { return bf16_; }
  const NamedTensors& params() const { return params_; }

 private:
  // The norm, the non-finite guard, clipping and Adam, after the gradients were reduced and
  // result.loss averaged.
  void update(const Stage& stage, StepResult& result);
  void drop_gradients();

  NamedTensors params_;
  StepForward forward_;
  SegmentGrad segment_grad_;
  Communicator& comm_;
  torch::Device device_;
  bool bf16_;
  int64_t vocab_;
  double l2wrap_, grad_clip_;
  std::unique_ptr<ParallelOptimizer> optimizer_;
};

}  // namespace rwkv::trainer
