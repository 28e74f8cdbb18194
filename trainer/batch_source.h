#pragma once
// The loop's view of the data: the samples of one stage in their deterministic order
// (RECIPE §7: the order is a pure function of the sample number, so the loop's only data state is
// the stage's sample count, saved in every checkpoint).
#include <torch/torch.h>

#include <cstdint>

namespace rwkv::trainer {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Samples first … first+count−1 of the stage, each ctx_len+1 tokens: (count, ctx_len+1) int64.
  virtual torch::Tensor samples(int64_t first, int64_t count) = 0;
};

}  // namespace rwkv::trainer
