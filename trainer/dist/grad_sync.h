#pragma once
// Data-parallel gradient averaging (buckets of gradients all-reduced as they arrive): the
// gradients live in flat fp32 buckets of a configurable size (the store's homes,
// trainer/dist/grad_store.h; DDP's gradient_as_bucket_view), so micro-batches accumulate in them
// and each bucket is all-reduced with SUM in place and divided by the world size in fp32: no
// packing, no second whole gradient. A few large collectives instead of one per tensor keep
// latency out of the step; after averaging every rank holds bit-identical gradients, so clipping
// and the NaN check agree on all ranks.
//
// The gradients are those of a GradStore: .grad for fp32 parameters, its fp32 sums for bf16 ones,
// both views of the buckets once a gradient has arrived.
//
// Overlap (train.overlap_grad_reduce): on a step's last micro-batch the store's listener hears
// each parameter once its gradient has been added to its slot, and a bucket whose members have
// all arrived starts its all-reduce while backward goes on. Buckets hold the parameters in
// reverse order, as backward produces them (head first, embedding last), and start strictly in
// bucket order so every rank issues the same collectives in the same sequence whatever order its
// hooks fire in. A parameter that gets no gradient in the last micro-batch is settled after
// backward (its earlier sum, or zeros), so every rank joins every bucket. The sums are those of
// average() (same elements, same collective), so both paths give bit-identical gradients.
#include <torch/torch.h>

#include <mutex>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/dist/grad_store.h"

namespace rwkv {

class GradientSync {
 public:
  // The store's parameters in a fixed order (identical on every rank); buckets hold about
  // `bucket_bytes` of whole parameters. `overlap` listens to the store (only with a process
  // group: Communicator::grouped). The store outlives this object.
  GradientSync(GradStore& grads, Communicator& comm, int64_t bucket_bytes, bool overlap = false);
  ~GradientSync();  // out of line: c10d::Work is incomplete here
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Just before the backward of a step's last micro-batch: with overlap, the hooks start packing
  // and reducing buckets during that backward. Otherwise (and on other micro-batches, where the
  // hooks are inactive) nothing happens.
  void arm_for_backward();

  // Replaces each parameter's gradient in the store by its average over ranks (an undefined one
  // counts as zeros and becomes defined). After an armed backward it completes the started
  // reductions; otherwise it reduces every bucket now. Without a process group nothing happens
  // (no buckets exist).
  void average();

  size_t bucket_count() const { return buckets_.size(); }
  // Buckets whose all-reduce the last armed backward started before it returned (for tests).
  size_t started_during_backward() const { return started_in_backward_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into the store
    int64_t numel = 0;
    torch::Tensor flat;           // fp32 on the parameters' device
    size_t missing = 0;           // members whose gradient has not arrived in the armed backward
    c10::intrusive_ptr<c10d::Work> work;
  };
  void on_gradient(size_t param);
  void start_ready_buckets();  // in bucket order, while the next one is complete
  torch::Tensor slot(size_t param);

  GradStore& grads_;
  Communicator& comm_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // per parameter
  std::vector<int64_t> offset_;    // per parameter, in its bucket
  std::vector<char> arrived_;      // per parameter, in the armed backward
  bool overlap_ = false;
  std::mutex mutex_;               // hooks may run on autograd's device thread
  bool armed_ = false;
  size_t next_start_ = 0;          // the first bucket not yet started
  size_t started_in_backward_ = 0;
};

}  // namespace rwkv
