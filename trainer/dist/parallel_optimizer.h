#pragma once
// The optimizer step of a data-parallel run (gradient buckets
// all-reduced (DDP) or reduce-scattered (ZeRO)): average the gradients over ranks, take the global
// norm, clip, Adam, leave every rank with the same updated fp32 parameters.
//
//   zero_stage 0  every rank keeps the whole Adam state; gradients are all-reduced in buckets
//                 (trainer/dist/grad_sync.h) and every rank applies the same update. With
//                 overlap_grad_reduce the buckets are reduced during the last micro-batch's
//                 backward, as their gradients arrive.
//   zero_stage 1  the Adam moments are sharded over the ranks along a flat view of all
//                 parameters; gradients are still all-reduced (bucket by bucket), each rank keeps
//                 the part of its shard, updates its shard of the parameters, and the updated
//                 shards are all-gathered.
//   zero_stage 2  as 1, and the gradients are reduce-scattered so each rank only receives the
//                 sum of its shard (half the traffic of an all-reduce).
// With fp32 training the parameters are the master weights, so stage 1 has no separate master
// copy to shard. The ZeRO stages here shard optimizer memory; the gradients of a step are still
// accumulated whole by autograd over the micro-batches before the reduce-scatter (true ZeRO-2
// reduces bucket by bucket during backward), so stage 2 saves the gradient memory of the
// optimizer step, not of the backward pass.
//
// Checkpoints always hold the full, gathered Adam state under the names of trainer/optim/optimizer.h, so
// a run resumes on any world size and any stage (resharding on load is taking a slice).
#include <memory>
#include <string>

#include "trainer/dist/communicator.h"
#include "trainer/optim/optimizer.h"

namespace rwkv::trainer {

class ParallelOptimizer {
 public:
  virtual ~ParallelOptimizer() = default;
  // After backward: the parameters' gradients (undefined counts as zero) summed over ranks and
  // divided by the world size in fp32. The .grad of each parameter is consumed (dropped) by the
  // sharded stages. Collective.
  virtual void reduce_gradients() = 0;
  // Just before the backward of a step's last micro-batch (stage 0 with overlap: from then on
  // each gradient bucket is reduced as soon as autograd has produced it; reduce_gradients()
  // completes). The sharded stages reduce after backward and ignore it.
  virtual void before_last_backward() {}
  // The global L2 norm of the averaged gradient, identical on every rank (+inf/NaN when any
  // element is non-finite): a 0-dim fp64 tensor on the parameters' device, not read to the host.
  // Collective for the sharded stages.
  virtual torch::Tensor grad_norm() = 0;
  // Scales the averaged gradient by clip_coefficient(norm, max_norm).
  virtual void clip(double norm, double max_norm) = 0;
  // One Adam update at base rate `lr`; afterwards every rank holds the same parameters. Collective.
  virtual void step(double lr, const LrMult& mult) = 0;
  virtual int64_t steps() const = 0;
  // The whole Adam state ("exp_avg.<name>", "exp_avg_sq.<name>") on rank 0; other ranks get
  // an empty list. Collective.
  virtual NamedTensors full_state() = 0;
  // Every rank loads its part of a full state; throws std::runtime_error naming a missing or
  // misshapen entry.
  virtual void load_full_state(const NamedTensors& state, int64_t steps) = 0;
};

// `params` in the same order on every rank (contiguous fp32 tensors on one device).
std::unique_ptr<ParallelOptimizer> make_parallel_optimizer(const NamedTensors& params, const AdamConfig& config,
                                                           Communicator& comm, int64_t zero_stage, int64_t bucket_bytes,
                                                           bool overlap_grad_reduce = false);

}  // namespace rwkv::trainer
