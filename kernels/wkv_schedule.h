#pragma once
// Which WKV CUDA kernels a call runs: the sequential ones (one thread per (b, c) walking all T
// steps) or the chunked ones (kernels/README.md "Chunked backward"; T/n-fold more threads for
// about twice the work), and in chunks of how many tokens. Decided from a model of both on the
// GPU at hand, so kernels/wkv_op_cuda.cpp (the decision) and `rwkv bench predict` (the step
// time, trainer/bench/cost_model.cpp) use the same arithmetic. Plain C++, no torch or CUDA.
//
// Every launch of either form is modeled as the longest of three bounds, in SM cycles:
//   - chain: its threads in waves of the resident ones, each wave as long as a thread's walk
//     (steps × the dependency chain of one step);
//   - issue: every thread-step's instructions at the SMs' issue rate;
//   - memory: its bytes at the bandwidth.
// The launches of one call run one after another on a stream, so their times add up.
// A MODEL, NOT A MEASUREMENT: no GPU has run these kernels yet. scripts/gpu-bundle/run.sh times the
// policy's choice against the sequential kernels at the shapes where it chooses differently.
#include <cstdint>
#include <optional>

namespace rwkv::kernels {

// The GPU as the schedule sees it.
struct WkvGpu {
  int64_t sms = 0;               // streaming multiprocessors
  int64_t resident_threads = 0;  // WKV threads that run at once over the whole GPU
  double cycles_per_step = 0;    // one time step's dependency chain (exps, a max, a division)
  double issue_per_sm_cycle = 0; // thread-instructions an SM issues per cycle
  double bytes_per_sm_cycle = 0; // memory bandwidth / (SMs × SM clock)
};

// The H100/H200-class GPU of the cost model's assumptions (trainer/bench/cost_model.cpp
// known_gpu, which replaces the bandwidth): 132 SMs with 768 WKV threads resident on each (the
// registers ptxas gives the backward walks), 100 cycles a step (kernels/README.md "Memory
// latency"), 4 schedulers × 32 lanes, and 12 bytes per SM cycle (an H100 SXM's ~3 TB/s at 1.98 GHz).
WkvGpu assumed_wkv_gpu();

struct WkvShape {
  int64_t B = 0, T = 0, C = 0;
  int64_t io_bytes = 0;  // bytes of one k, v, y or gradient element: 2 (bf16) or 4 (fp32)
};

// Modeled SM cycles of one forward and one backward (the workspace written by the forward walk it
// starts with) at `chunk` tokens a chunk; 0 (or chunk ≥ T) is the sequential kernels.
struct WkvCycles {
  double forward = 0, backward = 0;
};
WkvCycles wkv_cycles(const WkvShape& shape, int64_t chunk, const WkvGpu& gpu);

// The chunk lengths the policy tries, and how much faster (forward + backward, modeled) a chunked
// form must be than the sequential one to be chosen: the model is unmeasured, so a small predicted
// gain is not worth running kernels that do twice the arithmetic.
inline constexpr int64_t kWkvChunkCandidates[] = {32, 64, 128, 256, 512, 1024};
inline constexpr double kWkvChunkMargin = 1.25;

// The policy: the candidate below T with the fewest modeled cycles if it beats the sequential
// kernels by kWkvChunkMargin, else 0 (sequential).
int64_t wkv_choose_chunk(const WkvShape& shape, const WkvGpu& gpu);

// The chunk a call runs: `forced` (RWKV_WKV_CHUNK's value, or --wkv-chunk's) when given, else the
// policy; a chunk of T or more is the sequential kernels, 0.
int64_t wkv_chunk_for(const WkvShape& shape, std::optional<int64_t> forced, const WkvGpu& gpu);

// RWKV_WKV_CHUNK, read by the CUDA op: unset, empty or "auto" leaves the choice to the policy
// (nullopt); a non-negative integer forces it (0: the sequential kernels). Anything else throws
// std::invalid_argument naming the variable and the value.
std::optional<int64_t> wkv_chunk_override(const char* value);

}  // namespace rwkv::kernels
