#pragma once
// One micro-batch of training windows: (B, ctx_len+1) int64 tokens read at the sampler's
// window starts; inputs are the first ctx_len columns, targets the last ctx_len.
#include <torch/torch.h>

#include <cstdint>
#include <span>

#include "data/sampler.h"
#include "data/token_dataset.h"

namespace rwkv::data {

struct Batch {
  torch::Tensor tokens;   // (B, ctx_len+1) int64
  torch::Tensor inputs;   // tokens[:, :-1]
  torch::Tensor targets;  // tokens[:, 1:]
};

// Throws std::out_of_range when a window does not fit the dataset (a sampler built for another
// token count).
Batch make_batch(const TokenDataset& data, const Sampler& sampler, std::span<const int64_t> global_indices);

}  // namespace rwkv::data
