#include "kernels/wkv_schedule.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace rwkv::kernels {
namespace {

// Instructions per thread per step of each loop in kernels/wkv_kernels.cuh: the sm_90 SASS of the
// bf16 kernels, the loop's instructions over the steps one iteration takes (its global loads over
// the loads of a step). `scripts/wkv_sass_steps.py` prints them from the build's sm_90 cubin; the
// fp32 kernels' loops are 5–10% shorter.
constexpr double kOutputStep = 66;     // forward_kernel, chunk_pass_kernel<true>: y and the update
constexpr double kUpdateStep = 28.5;   // chunk_pass_kernel<false>, backward_states_kernel<false>
constexpr double kStateStep = 38;      // backward_states_kernel<true>, backward_kernel's forward walk
constexpr double kAdjointStep = 83;    // backward_adjoint_kernel<false>: the adjoint alone
constexpr double kGradStep = 118;      // backward_adjoint_kernel<true>, backward_kernel's reverse walk
constexpr double kStateScanStep = 57;  // backward_state_scan_kernel (chunk_scan_kernel: 49.5): one chunk
constexpr double kAdjointScanStep = 71;  // backward_adjoint_scan_kernel: one chunk
constexpr double kSumStep = 9;           // backward_finish_kernel: one chunk's partial sums

constexpr double kState = 12;    // bytes of one fp32 (aa, bb, pp)
constexpr double kAdjoint = 20;  // bytes of one fp32 adjoint (wkv::Adjoint: five floats)

struct Launch {
  double threads, steps, instructions_per_step, bytes;
};

double cycles(const Launch& l, const WkvGpu& g) {
  const double waves = std::ceil(l.threads / static_cast<double>(g.resident_threads));
  const double chain = waves * l.steps * g.cycles_per_step;
  const double issue = l.threads * l.steps * l.instructions_per_step / (static_cast<double>(g.sms) * g.issue_per_sm_cycle);
  const double memory = l.bytes / (static_cast<double>(g.sms) * g.bytes_per_sm_cycle);
  return std::max({chain, issue, memory});
}

double sum(std::initializer_list<Launch> launches, const WkvGpu& g) {
  double total = 0;
  for (const Launch& l : launches) total += cycles(l, g);
  return total;
}

}  // namespace

WkvGpu assumed_wkv_gpu() {
  WkvGpu g;
  g.sms = 132;
  // ptxas gives the long walks 49–80 registers (the build's kernel resource report): 6–9 blocks
  // of 128 threads per SM; the fewest, as wkv_gpu_figures takes on a real device.
  g.resident_threads = 132 * 6 * 128;
  g.cycles_per_step = 100;
  g.issue_per_sm_cycle = 128;
  g.bytes_per_sm_cycle = 12;
  return g;
}

WkvCycles wkv_cycles(const WkvShape& s, int64_t chunk, const WkvGpu& g) {
  if (s.B < 1 || s.T < 1 || s.C < 1 || s.io_bytes < 1 || chunk < 0 || g.sms < 1 || g.resident_threads < 1 ||
      g.issue_per_sm_cycle <= 0 || g.bytes_per_sm_cycle <= 0 || g.cycles_per_step < 0)
    throw std::invalid_argument("wkv_cycles: need positive B, T, C, element size and GPU figures, chunk >= 0");
  const double bc = static_cast<double>(s.B * s.C), T = static_cast<double>(s.T), e = static_cast<double>(s.io_bytes);
  const double n_elems = bc * T;
  WkvCycles out;
  if (chunk == 0 || chunk >= s.T) {
    // forward_kernel reads k, v and writes y; backward_kernel walks forward storing every state,
    // then back reading the states, k, v and ∂L/∂y and writing ∂L/∂k and ∂L/∂v.
    out.forward = sum({{bc, T, kOutputStep, n_elems * 3 * e}}, g);
    out.backward = sum({{bc, T, kStateStep, n_elems * (2 * e + kState)}, {bc, T, kGradStep, n_elems * (kState + 5 * e)}}, g);
    return out;
  }
  const double n = static_cast<double>(chunk), m = std::ceil(T / n), chunks = bc * m;
  // wkv_forward_chunked: summaries from the empty state, their scan per (b, c), the outputs.
  out.forward = sum({{chunks, n, kUpdateStep, n_elems * 2 * e + chunks * kState},
                     {bc, m, kStateScanStep, chunks * 2 * kState},
                     {chunks, n, kOutputStep, n_elems * 3 * e + chunks * kState}},
                    g);
  // wkv_backward_chunked's seven launches (kernels/wkv_kernels.cuh launch_backward_chunked).
  out.backward = sum({{chunks, n, kUpdateStep, n_elems * 2 * e + chunks * kState},
                      {bc, m, kStateScanStep, chunks * 2 * kState},
                      {chunks, n, kStateStep, n_elems * (2 * e + kState) + chunks * kState},
                      {chunks, n, kAdjointStep, n_elems * (kState + 3 * e) + chunks * kAdjoint},
                      {bc, m, kAdjointScanStep, chunks * 2 * kAdjoint},
                      {chunks, n, kGradStep, n_elems * (kState + 5 * e) + chunks * (kAdjoint + 8)},
                      {bc, m, kSumStep, chunks * 8}},
                     g);
  return out;
}

int64_t wkv_choose_chunk(const WkvShape& shape, const WkvGpu& gpu) {
  const WkvCycles seq = wkv_cycles(shape, 0, gpu);
  const double sequential = seq.forward + seq.backward;
  int64_t best = 0;
  double best_cycles = sequential / kWkvChunkMargin;
  for (const int64_t chunk : kWkvChunkCandidates) {
    if (chunk >= shape.T) break;
    const WkvCycles c = wkv_cycles(shape, chunk, gpu);
    if (c.forward + c.backward < best_cycles) {
      best = chunk;
      best_cycles = c.forward + c.backward;
    }
  }
  return best;
}

int64_t wkv_chunk_for(const WkvShape& shape, std::optional<int64_t> forced, const WkvGpu& gpu) {
  if (forced) return *forced < shape.T ? *forced : 0;
  return wkv_choose_chunk(shape, gpu);
}

std::optional<int64_t> wkv_chunk_override(const char* value) {
  if (value == nullptr || *value == '\0' || std::string(value) == "auto") return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(value, &end, 10);
  if (std::isdigit(static_cast<unsigned char>(*value)) == 0 || *end != '\0' || errno == ERANGE)
    throw std::invalid_argument(std::string("RWKV_WKV_CHUNK must be \"auto\" or a non-negative integer (tokens per "
                                            "chunk; 0: the sequential kernels), got '") +
                                value + "'");
  return n;
}

}  // namespace rwkv::kernels
