#pragma once
// The optimizer step of a data-parallel run (gradient buckets
// all-reduced (DDP) or reduce-scattered (ZeRO)): average the gradients over ranks, take the global
// norm, clip, Adam, leave every rank with the same updated parameters.
//
// Mixed precision as the reference trains (issue 14; RWKV-LM's DeepSpeed bf16): the module's
// parameters are in the compute dtype (bf16 on GPU, fp32 or bf16 on CPU); the optimizer keeps
// fp32 master weights and Adam moments, sharded by ZeRO stage, accumulates gradients in fp32
// (trainer/dist/grad_store.h), applies the update to the fp32 masters and casts the result into
// the module's parameters. In fp32 the parameters are the masters: no copy, and the arithmetic is
// exactly that of fp32 training without this machinery.
//
//   zero_stage 0  every rank keeps the whole masters and Adam state; gradients are all-reduced in
//                 buckets (trainer/dist/grad_sync.h) and every rank applies the same update. With
//                 overlap_grad_reduce the buckets are reduced during the last micro-batch's
//                 backward, as their gradients arrive.
//   zero_stage 1  the masters and Adam moments are sharded over the ranks along a flat view of all
//                 parameters; gradients are accumulated whole and all-reduced after backward
//                 (bucket by bucket), each rank keeps the part of its shard, updates its shard, and
//                 the updated shards are all-gathered into every rank's parameters (in the compute
//                 dtype).
//   zero_stage 2  as 1, but the gradients never exist whole: as a bucket's gradients arrive during
//                 each backward they are reduce-scattered, each rank adding only its own part into
//                 an fp32 shard; the full-size gradient of a parameter lives from its arrival until
//                 it is copied into its bucket. A run in segments reduces after each segment's
//                 backward; each micro-batch's reduce-scatter costs one gradient's traffic (as
//                 DeepSpeed's ZeRO-2 with accumulation).
// Collectives use the single-tensor forms (one flat buffer per bucket in and out).
//
// Checkpoints are sharded the same way (trainer/checkpoint/checkpoint.h): every rank writes its
// flat ranges of the fp32 masters and moments, and loads by reading the slices of the names of
// trainer/optim/optimizer.h its own shard covers, so a run resumes on any world size and any stage.
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
  // After the step's backward passes: the gradients (undefined counts as zero) summed over ranks
  // and divided by the world size in fp32. Collective.
  virtual void reduce_gradients() = 0;
  // Just before the backward of a step's last micro-batch (stage 0 with overlap: from then on
  // each gradient bucket is reduced as soon as autograd has produced it; reduce_gradients()
  // completes). The other stages ignore it.
  virtual void before_last_backward() {}
  // After every backward call (stage 2 completes the reduce-scatters of that backward here; a
  // backward before the next one's or reduce_gradients() is required). Collective for stage 2.
  virtual void after_backward() {}
  // Forgets the gradients accumulated so far (a new step, or a step abandoned by a stop).
  virtual void drop_gradients() = 0;
  // The global L2 norm of the averaged gradient, identical on every rank (+inf/NaN when any
  // element is non-finite): a 0-dim fp64 tensor on the parameters' device, not read to the host.
  // Collective for the sharded stages.
  virtual torch::Tensor grad_norm() = 0;
  // Scales the averaged gradient by clip_coefficient(norm, max_norm), as part of the next step's
  // Adam pass (trainer/optim/optimizer.h adam_update_all): the gradients themselves are not
  // rewritten on the CPU.
  virtual void clip(double norm, double max_norm) = 0;
  // One Adam update at base rate `lr`; afterwards every rank holds the same parameters. Collective.
  virtual void step(double lr, const LrMult& mult) = 0;
  virtual int64_t steps() const = 0;
  // The runs [begin, end) of the flat view (the parameters concatenated in order) that this rank
  // writes into a checkpoint, ascending: its shard under ZeRO; under stage 0, where every rank
  // holds everything, the rank-th of world_size equal cuts.
  virtual const std::vector<std::pair<int64_t, int64_t>>& checkpoint_ranges() const = 0;
  // The fp32 master weights and both moments over checkpoint_ranges(), concatenated, copied into
  // `weights`, `exp_avg` and `exp_avg_sq` (1-D fp32, as long as the ranges together; host memory).
  // Not collective.
  virtual void copy_state(torch::Tensor& weights, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq) const = 0;
  // Elements [offset, offset + length) of the flattened state tensor `key` ("exp_avg.<name>",
  // "exp_avg_sq.<name>") of shape `shape`, as a 1-D fp32 CPU tensor; throws naming what is missing.
  using SliceReader =
      std::function<torch::Tensor(const std::string& key, c10::IntArrayRef shape, int64_t offset, int64_t length)>;
  // Every rank reads the slices its own moments cover. Not collective.
  virtual void load_state(const SliceReader& read, int64_t steps) = 0;
  // The fp32 master weights from the weights' names (read by slices: a rank reads its own shard),
  // after the module's parameters were loaded. Nothing to do when they are the masters (fp32).
  virtual void load_masters(const SliceReader& read) = 0;
};

// Runs [begin, end) of the flat view of `tensors` (each flattened, concatenated in order), copied
// one after the other into `out` (1-D, as long as the runs together).
void copy_flat_ranges(const std::vector<torch::Tensor>& tensors, const std::vector<std::pair<int64_t, int64_t>>& ranges,
                      torch::Tensor& out);

struct ParallelOptions {
  int64_t zero_stage = 0;
  int64_t bucket_bytes = 25 << 20;
  bool overlap_grad_reduce = false;
  // The module's parameters train in this dtype (fp32 or bf16): with bf16 the fp32 masters are
  // taken from the parameters given (bf16 as the model is built for training, as the reference's
  // DeepSpeed bf16 optimizer takes them; or fp32), which are then converted in place if they are
  // not bf16 yet (the same tensors: the module keeps them).
  torch::ScalarType compute_dtype = torch::kFloat32;
};

// `params` in the same order on every rank (contiguous, fp32 or the compute dtype, on one device).
std::unique_ptr<ParallelOptimizer> make_parallel_optimizer(const NamedTensors& params, const AdamConfig& config,
                                                           Communicator& comm, const ParallelOptions& options);

}  // namespace rwkv::trainer
