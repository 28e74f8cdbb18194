#pragma once
// Data-parallel gradient averaging (DESIGN.md data flow: "gradient buckets: all-reduce"):
// gradients are packed into flat buckets of a configurable size, each bucket is all-reduced
// with SUM and divided by the world size in fp32, and the result is unpacked. A few large
// collectives instead of one per tensor keep latency out of the step; after averaging every
// rank holds bit-identical gradients, so clipping and the NaN check agree on all ranks.
#include <torch/torch.h>

#include <vector>

#include "trainer/communicator.h"

namespace rwkv {

class GradientSync {
 public:
  // `params` in a fixed order (identical on every rank); buckets hold about `bucket_bytes`.
  GradientSync(std::vector<torch::Tensor> params, Communicator& comm, int64_t bucket_bytes);

  // Replaces each parameter's .grad by its average over ranks (an undefined grad counts as
  // zeros and becomes defined). With one rank nothing is copied.
  void average();

  size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into params_
    int64_t numel = 0;
    torch::Tensor flat;           // fp32 on the parameters' device
  };
  std::vector<torch::Tensor> params_;
  Communicator& comm_;
  std::vector<Bucket> buckets_;
};

}  // namespace rwkv
