#include "trainer/bench/flops_peak.h"

#include <cctype>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "kernels/cuda_runtime_info.h"
#include "trainer/bench/bench.h"

namespace rwkv::trainer {

std::vector<GemmShape> model_gemm_shapes(const ModelConfig& c) {
  const int64_t D = c.n_embd, A = c.att(), F = c.ffn(), L = c.n_layer;
  std::vector<GemmShape> shapes;
  // Merge equal shapes (A = D makes the time-mix and channel-mix receptances one shape).
  const auto add = [&](int64_t in, int64_t out, int64_t count) {
    for (auto& s : shapes)
      if (s.in == in && s.out == out) {
        s.count += count;
        return;
      }
    shapes.push_back({in, out, count});
  };
  add(D, A, 3 * L);  // att.key, att.value, att.receptance
  add(A, D, L);      // att.output
  add(D, D, L);      // ffn.receptance
  add(D, F, L);      // ffn.key
  add(F, D, L);      // ffn.value
  add(D, c.vocab_size, 1);  // head
  return shapes;
}

GemmRate measure_gemm_rate(const ModelConfig& config, int64_t tokens, const torch::TensorOptions& options, int runs,
                           int warmup) {
  TORCH_CHECK(tokens > 0 && runs > 0 && warmup >= 0, "measure_gemm_rate: tokens and runs must be positive");
  torch::NoGradGuard no_grad;
  const bool cuda = options.device().is_cuda();
  const auto sync = [&] {
    if (cuda) torch::cuda::synchronize();
  };
  struct Operands {
    torch::Tensor x, w, dy;
    int64_t count;
  };
  std::vector<Operands> ops;
  double flops = 0;  // of one step's GEMMs
  for (const GemmShape& s : model_gemm_shapes(config)) {
    ops.push_back({torch::randn({tokens, s.in}, options), torch::randn({s.out, s.in}, options),
                   torch::randn({tokens, s.out}, options), s.count});
    flops += 3.0 * 2.0 * static_cast<double>(tokens * s.in * s.out * s.count);
  }
  // One run: each shape's three products timed separately, weighted by how often the step has them.
  const auto one_run = [&] {
    double seconds = 0;
    for (const auto& o : ops) {
      sync();
      const auto t0 = std::chrono::steady_clock::now();
      const torch::Tensor y = torch::mm(o.x, o.w.t());
      const torch::Tensor dx = torch::mm(o.dy, o.w);
      const torch::Tensor dw = torch::mm(o.dy.t(), o.x);
      sync();
      seconds += static_cast<double>(o.count) *
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    return seconds;
  };
  for (int i = 0; i < warmup; ++i) one_run();
  std::vector<double> rates;
  for (int i = 0; i < runs; ++i) rates.push_back(flops / one_run() / 1e12);
  std::sort(rates.begin(), rates.end());
  return GemmRate{rates[rates.size() / 2], rates.front(), rates.back(), runs};
}

Bandwidth measure_copy_bandwidth(int64_t bytes, const torch::Device& device, int runs, int warmup) {
  TORCH_CHECK(bytes >= 4 && runs > 0 && warmup >= 0, "measure_copy_bandwidth: bytes and runs must be positive");
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const torch::Tensor src = torch::rand({bytes / 4}, f32), dst = torch::empty_like(src);
  const bench::Timing t = bench::time_runs(runs, warmup, device, [&] { dst.copy_(src); });
  const double moved = 2.0 * static_cast<double>(src.numel() * 4);
  const auto gbs = [&](double ms) { return moved / (ms * 1e-3) / 1e9; };
  return {gbs(t.median_ms), gbs(t.max_ms), gbs(t.min_ms), t.runs};
}

namespace {

// `key` in `name` as whole words: "L4" is not in "NVIDIA L40", "H200" not in "NVIDIA GH200".
bool names_part(const std::string& name, const std::string& key) {
  const auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  for (size_t at = name.find(key); at != std::string::npos; at = name.find(key, at + 1)) {
    const size_t end = at + key.size();
    if ((at == 0 || !alnum(name[at - 1])) && (end == name.size() || !alnum(name[end]))) return true;
  }
  return false;
}

}  // namespace

std::optional<double> known_bf16_peak_tflops(const std::string& name) {
  // Vendor data sheets, dense bf16 tensor-core TFLOP/s. More specific names first: "H100 PCIe"
  // must not fall through to the SXM part's figure, nor "H200 NVL" to the H200 SXM's.
  static const std::pair<const char*, double> table[] = {
      {"H100 PCIe", 756}, {"H100 NVL", 835}, {"H100", 989}, {"H200 NVL", 835}, {"H200", 989},
      {"GH200", 989},     {"B200", 2250},    {"A100", 312}, {"L40S", 362},     {"L40", 181},
      {"L4", 121},        {"A10", 125},
  };
  for (const auto& [key, tflops] : table)
    if (names_part(name, key)) return tflops;
  return std::nullopt;
}

PeakEstimate auto_peak(const ModelConfig& config, int64_t tokens, const torch::Device& device) {
  if (device.is_cuda()) {
    const std::string name = kernels::cuda_device_name(device.has_index() ? device.index() : 0);
    if (const auto peak = known_bf16_peak_tflops(name))
      return {*peak, fmt::format("table: {} dense bf16", name)};
  }
  const auto dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  // 3 timed runs after 1 untimed: the GEMMs of about 4 training steps, once at startup.
  const GemmRate r = measure_gemm_rate(config, tokens, torch::TensorOptions().dtype(dtype).device(device), 3, 1);
  return {r.median_tflops,
          fmt::format("measured: the model's GEMMs alone, {} rows, {} on {}, median of {} (min {:.4g}, max {:.4g} "
                      "TFLOP/s)",
                      tokens, dtype == torch::kBFloat16 ? "bf16" : "fp32", device.str(), r.runs, r.min_tflops,
                      r.max_tflops)};
}

}  // namespace rwkv::trainer
