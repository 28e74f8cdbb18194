#pragma once
// The kernel census of `rwkv bench train --census`: how many operators reach a device kernel, and
// how many bytes of tensors they touch, while some code runs, counted on the CPU from LibTorch's
// dispatcher (at::RecordFunction callbacks, the hooks the profiler uses). On a GPU every counted
// operator is one kernel launch at least, and the bytes bound its memory traffic from below, so
// the census predicts launch overhead and bandwidth cost of a step without a GPU (DESIGN.md
// "The benchmark is the training step").
//
// What counts as a launch: an operator (RecordScope::FUNCTION, with a schema) none of whose nested
// operators launched, that is neither a view (every result aliases an input read-only, by its
// schema: t, transpose, view, slice, expand, ...; and _unsafe_view) nor an allocation of
// uninitialised memory (empty*) nor result_type.
// A composite (linear → t + matmul → mm) is therefore counted by its innermost kernels (mm), and
// a kernel that allocates its output first (empty, then its loop) by itself. The project's own
// kernels (WKV, the token-shift mixes) announce themselves with RECORD_FUNCTION, a name starting
// with "rwkv::" and their tensor arguments, outputs included, so they count too.
// Bytes of a launch: the sizes (numel × element size) of the distinct tensors among its arguments
// and results, each counted once (an in-place result is its input): what the kernel touches at
// least once, a lower bound on traffic (an in-place add reads and writes `self`, counted once).
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "rwkv/model_config.h"

namespace rwkv::bench {

struct OpTally {
  int64_t launches = 0;
  int64_t bytes = 0;
};

struct OpCensus {
  std::map<std::string, OpTally> by_op;  // keyed by operator name (aten::mul, rwkv::wkv_forward, ...)

  OpTally total() const;
  OpTally gemm() const;   // matrix products: mm, addmm, bmm, baddbmm, addbmm, mv, addmv, dot
  OpTally other() const;  // everything else: elementwise, reductions, LayerNorm, WKV, copies
};

// Counts every launch (as above) on any thread while it lives; take() returns what was counted.
// One recorder at a time.
class OpCensusRecorder {
 public:
  OpCensusRecorder();
  ~OpCensusRecorder();
  OpCensusRecorder(const OpCensusRecorder&) = delete;
  OpCensusRecorder& operator=(const OpCensusRecorder&) = delete;

  // What has been counted since construction or the last take(), and a fresh start.
  OpCensus take();

  struct Shared {
    std::mutex mutex;
    OpCensus census;
  };

 private:
  std::shared_ptr<Shared> shared_;
  uint64_t handle_;
};

// The census of one block (layer 1 of `config`: no ln0) on (B, T, D) inputs on the CPU, forward
// and backward separately, with random weights (op counts do not depend on values). Parameters,
// input and output gradient in `dtype`: kFloat32, or kBFloat16 as the CUDA step holds them (bf16
// parameters, fp32 masters in the optimizer: trainer/train/train_step.h compute_dtype).
struct BlockCensus {
  OpCensus forward, backward;
};
BlockCensus census_block(const ModelConfig& config, int64_t B, int64_t T, torch::ScalarType dtype);

// `rwkv bench train --census`: census_block in fp32 and in bf16, printed as a table
// (launches per block forward and backward, GEMMs among them, bytes per token, the non-GEMM bytes
// per token in units of D, each operator's launches) and returned as the JSON field "census".
nlohmann::json report_block_census(const ModelConfig& config, int64_t B, int64_t T);

}  // namespace rwkv::bench
