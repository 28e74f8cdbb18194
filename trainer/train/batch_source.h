#pragma once
// The loop's view of the data: the samples of one stage in their deterministic order
// (data/README.md "Token files and sample order": the order is a pure function of the sample number, so the loop's only data state is
// the stage's sample count, saved in every checkpoint).
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace rwkv::trainer {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Samples first … first+count−1 of the stage, each ctx_len+1 tokens: (count, ctx_len+1) int64.
  virtual torch::Tensor samples(int64_t first, int64_t count) = 0;
  // The samples with these stage sample numbers, in order (a rank's rows of a micro-batch are
  // strided by the world size: data/sampler.h). The default reads them one at a time.
  virtual torch::Tensor samples_at(const std::vector<int64_t>& indices) {
    std::vector<torch::Tensor> rows;
    for (int64_t g : indices) rows.push_back(samples(g, 1));
    return torch::cat(rows);
  }
};

}  // namespace rwkv::trainer
