#include "data/sampler.h"

#include <fmt/format.h>

#include <stdexcept>

namespace rwkv::data {

int64_t global_sample_index(const BatchLayout& l, int64_t step, int accum_step, int rank, int row) {
  if (l.world_size < 1 || l.micro_batch < 1 || l.accumulation < 1)
    throw std::invalid_argument("batch layout: world_size, micro_batch and accumulation must be ≥ 1");
  if (step < 0 || accum_step < 0 || accum_step >= l.accumulation || rank < 0 || rank >= l.world_size ||
      row < 0 || row >= l.micro_batch)
    throw std::out_of_range(fmt::format("sample (step {}, accum {}, rank {}, row {}) outside the layout "
                                        "(world {}, accumulation {}, micro-batch {})",
                                        step, accum_step, rank, row, l.world_size, l.accumulation,
                                        l.micro_batch));
  return step * l.global_batch() + (int64_t{accum_step} * l.micro_batch + row) * l.world_size + rank;
}

std::vector<int64_t> micro_batch_indices(const BatchLayout& l, int64_t step, int accum_step, int rank) {
  std::vector<int64_t> out(static_cast<size_t>(l.micro_batch));
  for (int b = 0; b < l.micro_batch; ++b) out[static_cast<size_t>(b)] = global_sample_index(l, step, accum_step, rank, b);
  return out;
}

}  // namespace rwkv::data
