#include "data/batch.h"

namespace rwkv::data {

Batch make_batch(const TokenDataset& data, const Sampler& sampler, std::span<const int64_t> global_indices) {
  const int64_t B = static_cast<int64_t>(global_indices.size()), T1 = sampler.ctx_len() + 1;
  Batch b;
  b.tokens = torch::empty({B, T1}, torch::kInt64);
  int64_t* out = b.tokens.data_ptr<int64_t>();
  for (int64_t i = 0; i < B; ++i) data.read(sampler.window_start(global_indices[i]), T1, out + i * T1);
  b.inputs = b.tokens.slice(1, 0, T1 - 1);
  b.targets = b.tokens.slice(1, 1, T1);
  return b;
}

}  // namespace rwkv::data
