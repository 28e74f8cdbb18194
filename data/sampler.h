#pragma once
// Where each training sample starts, as a pure function of its global sample index, so that
// resuming needs no loader state and the order does not depend on the number of ranks
// (data order is a pure function of the global sample number).
//
// Global sample index g (0-based, counted from the start of the run). A run with world_size W
// ranks, micro-batch B rows per rank and A accumulation micro-steps per optimizer step has
// global batch G = W·A·B; at optimizer step s (0-based, counted across mini-epochs), rank r,
// accumulation micro-step a, row b:
//     g = s·G + ((a·B + b)·W + r)
// This is the reference trainer's layout: each rank's loader counts its own samples
// idx = (s·A + a)·B + b, and the reference's sample number is ii = 1 + epoch·40320 + idx·W + r
// (data/README.md "Token files and sample order"), i.e. ii = g + 1 when G divides 40320. One optimizer step consumes exactly the
// indices [s·G, (s+1)·G) whatever W, A and B are, so the data of a step is unchanged when the
// world size changes at the same global batch; distinct (a, b, r) give distinct g, so ranks never
// share a sample.
#include <cstdint>
#include <span>
#include <vector>

namespace rwkv::data {

struct BatchLayout {
  int world_size = 1;
  int micro_batch = 1;  // rows per rank per micro-step (B)
  int accumulation = 1;  // micro-steps per optimizer step (A)
  int64_t global_batch() const { return int64_t{world_size} * micro_batch * accumulation; }
};

// g for (optimizer step, accumulation micro-step, rank, row); validates the ranges.
int64_t global_sample_index(const BatchLayout& layout, int64_t step, int accum_step, int rank, int row);

// The B global sample indices of one rank's micro-batch, in row order.
std::vector<int64_t> micro_batch_indices(const BatchLayout& layout, int64_t step, int accum_step, int rank);

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Token position of the first of the ctx_len+1 tokens of sample g (g ≥ 0).
  virtual int64_t window_start(int64_t global_index) const = 0;
  virtual int64_t ctx_len() const = 0;
};

}  // namespace rwkv::data
