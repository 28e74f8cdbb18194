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
// Checkpoints are sharded the same way (trainer/checkpoint/checkpoint.h): every rank writes its
// flat ranges, and loads by reading the slices of the names of trainer/optim/optimizer.h its own
// shard covers, so a run resumes on any world size and any stage.
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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
  // The runs [begin, end) of the flat view (the parameters concatenated in order) that this rank
  // writes into a checkpoint, ascending: its shard under ZeRO; under stage 0, where every rank
  // holds everything, the rank-th of world_size equal cuts.
  virtual const std::vector<std::pair<int64_t, int64_t>>& checkpoint_ranges() const = 0;
  // Both moments over checkpoint_ranges(), concatenated, copied into `exp_avg` and `exp_avg_sq`
  // (1-D fp32, as long as the ranges together; host memory). Not collective.
  virtual void copy_moments(torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq) const = 0;
  // Elements [offset, offset + length) of the flattened state tensor `key` ("exp_avg.<name>",
  // "exp_avg_sq.<name>") of shape `shape`, as a 1-D fp32 CPU tensor; throws naming what is missing.
  using SliceReader =
      std::function<torch::Tensor(const std::string& key, c10::IntArrayRef shape, int64_t offset, int64_t length)>;
  // Every rank reads the slices its own state covers. Not collective.
  virtual void load_state(const SliceReader& read, int64_t steps) = 0;
};

// Runs [begin, end) of the flat view of `tensors` (each flattened, concatenated in order), copied
// one after the other into `out` (1-D, as long as the runs together).
void copy_flat_ranges(const std::vector<torch::Tensor>& tensors, const std::vector<std::pair<int64_t, int64_t>>& ranges,
                      torch::Tensor& out);

// `params` in the same order on every rank (contiguous fp32 tensors on one device).
std::unique_ptr<ParallelOptimizer> make_parallel_optimizer(const NamedTensors& params, const AdamConfig& config,
                                                           Communicator& comm, int64_t zero_stage, int64_t bucket_bytes,
                                                           bool overlap_grad_reduce = false);

}  // namespace rwkv::trainer
