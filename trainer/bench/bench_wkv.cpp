// `rwkv bench wkv`: the WKV op (rwkv/wkv.h) against a straightforward ATen implementation
// (per-timestep tensor ops over (B, C), autograd for the backward), forward alone and
// forward+backward, on the same inputs in the same run, with the agreement of the two. On CUDA,
// when the op runs the chunked kernels (kernels/wkv_schedule.h's choice, or RWKV_WKV_CHUNK), the
// sequential kernels too, and the measured speed-up next to the schedule's predicted one.
#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "kernels/wkv_op.h"
#include "kernels/wkv_schedule.h"
#include "rwkv/wkv.h"
#include "trainer/bench/bench.h"

namespace rwkv::bench {
namespace {

// The peer: kernels/README.md "WKV"'s stable recurrence as one ATen op per arithmetic step.
torch::Tensor wkv_aten_loop(const torch::Tensor& time_decay, const torch::Tensor& time_first, const torch::Tensor& k,
                            const torch::Tensor& v) {
  const torch::Tensor w = -torch::exp(time_decay.to(torch::kFloat32));
  const torch::Tensor u = time_first.to(torch::kFloat32);
  const auto opts = k.options().dtype(torch::kFloat32);
  torch::Tensor aa = torch::zeros({k.size(0), k.size(2)}, opts), bb = torch::zeros_like(aa);
  torch::Tensor pp = torch::full_like(aa, -1e38);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < k.size(1); ++t) {
    const torch::Tensor kt = k.select(1, t).to(torch::kFloat32), vt = v.select(1, t).to(torch::kFloat32);
    const torch::Tensor uk = u + kt;
    torch::Tensor m = torch::maximum(pp, uk);
    torch::Tensor e1 = torch::exp(pp - m), e2 = torch::exp(uk - m);
    ys.push_back(((e1 * aa + e2 * vt) / (e1 * bb + e2)).to(k.scalar_type()));
    const torch::Tensor pw = pp + w;
    m = torch::maximum(pw, kt);
    e1 = torch::exp(pw - m);
    e2 = torch::exp(kt - m);
    aa = e1 * aa + e2 * vt;
    bb = e1 * bb + e2;
    pp = m;
  }
  return torch::stack(ys, 1);
}

}  // namespace

void bench_wkv(const WkvOptions& o) {
  if (o.runs < 1 || o.warmup < 0 || o.B < 1 || o.T < 1 || o.C < 1)
    throw std::invalid_argument("bench wkv: --B, --T, --C and --runs must be positive, --warmup non-negative");
  const torch::Device dev = device_flag(o.device, "bench wkv");
  const auto dtype = o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  torch::manual_seed(0);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  // Inputs in the range a trained model produces (time_decay as the reference initialises it).
  const torch::Tensor td = (torch::linspace(-5, 3, o.C, f32)).requires_grad_(true);
  const torch::Tensor tf = torch::full({o.C}, std::log(0.3), f32).requires_grad_(true);
  const torch::Tensor k = (torch::randn({o.B, o.T, o.C}, f32) * 2).to(dtype).requires_grad_(true);
  const torch::Tensor v = torch::randn({o.B, o.T, o.C}, f32).to(dtype).requires_grad_(true);
  const torch::Tensor r = torch::randn({o.B, o.T, o.C}, f32);

  std::vector<torch::Tensor> results;  // y, then the four gradients, of the last run
  const auto forward = [&](bool op) { return op ? rwkv::wkv(td, tf, k, v).y : wkv_aten_loop(td, tf, k, v); };
  const auto step = [&](bool op) {
    for (const auto& p : {td, tf, k, v}) p.mutable_grad() = torch::Tensor();
    const torch::Tensor y = forward(op);
    (y.to(torch::kFloat32) * r).sum().backward();
    results = {y.detach(), td.grad(), tf.grad(), k.grad(), v.grad()};
  };
  fmt::print("wkv, B={} T={} C={}, {} on {}, {} threads, {} runs after {} warm-up\n", o.B, o.T, o.C, o.dtype,
             dev.str(), at::get_num_threads(), o.runs, o.warmup);
  const auto timed = [&](const std::function<void()>& fn) { return time_runs(o.runs, o.warmup, dev, fn); };
  Timing fwd_op, fwd_loop;
  {
    torch::NoGradGuard no_grad;
    fwd_op = timed([&] { forward(true); });
    if (!o.no_loop) fwd_loop = timed([&] { forward(false); });
  }
  const Timing op = timed([&] { step(true); });
  const auto op_results = results;
  // The kernels the CUDA op chose, and the sequential ones for comparison when it chose others.
  const int64_t chunk = dev.is_cuda() ? kernels::wkv_chunk_cuda(k) : 0;
  Timing sequential;
  if (chunk > 0) {
    const char* env = std::getenv("RWKV_WKV_CHUNK");
    const std::optional<std::string> was = env ? std::optional<std::string>(env) : std::nullopt;
    setenv("RWKV_WKV_CHUNK", "0", 1);
    sequential = timed([&] { step(true); });
    if (was)
      setenv("RWKV_WKV_CHUNK", was->c_str(), 1);
    else
      unsetenv("RWKV_WKV_CHUNK");
  }
  Timing loop;
  if (!o.no_loop) loop = timed([&] { step(false); });

  fmt::print("  {:<22} {:>11} {:>11} {:>11}\n", "(ms)", "median", "min", "max");
  const auto row = [](const char* name, const Timing& t) {
    fmt::print("  {:<22} {:11.2f} {:11.2f} {:11.2f}\n", name, t.median_ms, t.min_ms, t.max_ms);
  };
  row("wkv op forward", fwd_op);
  if (!o.no_loop) row("aten loop forward", fwd_loop);
  row("wkv op fwd+bwd", op);
  if (!o.no_loop) row("aten loop fwd+bwd", loop);
  // The forward must read k and v and write y once: its achieved bandwidth against that minimum.
  const double io_bytes = 3.0 * static_cast<double>(o.B * o.T * o.C) * static_cast<double>(k.element_size());
  const double gb_s = io_bytes / (fwd_op.median_ms * 1e-3) / 1e9;
  fmt::print("  wkv op forward bandwidth (k, v read + y written once): {:.1f} GB/s\n", gb_s);
  if (dev.is_cuda())
    fmt::print("  kernels: {}\n", chunk > 0 ? fmt::format("chunked, {} tokens a chunk", chunk) : std::string("sequential"));
  nlohmann::json j = {{"bench", "wkv"},
                      {"B", o.B}, {"T", o.T}, {"C", o.C}, {"dtype", o.dtype}, {"device", dev.str()},
                      {"threads", at::get_num_threads()},
                      {"forward", {{"op", to_json(fwd_op)}}},
                      {"forward_backward", {{"op", to_json(op)}}},
                      {"forward_gb_per_s", gb_s},
                      {"chunk", chunk}};
  if (chunk > 0) {
    // PREDICTED by the schedule's model on this device's figures, next to the measured ratio.
    const kernels::WkvShape shape{o.B, o.T, o.C, static_cast<int64_t>(k.element_size())};
    const kernels::WkvGpu gpu = kernels::wkv_gpu_figures_cuda(dev.index() < 0 ? 0 : dev.index());
    const kernels::WkvCycles c = kernels::wkv_cycles(shape, chunk, gpu), s0 = kernels::wkv_cycles(shape, 0, gpu);
    const double predicted = (s0.forward + s0.backward) / (c.forward + c.backward);
    const double measured = sequential.median_ms / op.median_ms;
    row("sequential fwd+bwd", sequential);
    fmt::print("  chunked over sequential, fwd+bwd: measured {:.2f}x, predicted {:.2f}x (kernels/wkv_schedule.h)\n",
               measured, predicted);
    j["forward_backward"]["sequential"] = to_json(sequential);
    j["chunked_speedup"] = {{"measured", measured}, {"predicted", predicted}};
  }
  if (!o.no_loop) {
    fmt::print("  speed-up (median aten loop / median wkv op): forward {:.1f}x, forward+backward {:.1f}x\n",
               fwd_loop.median_ms / fwd_op.median_ms, loop.median_ms / op.median_ms);
    const char* names[] = {"y", "d time_decay", "d time_first", "d k", "d v"};
    fmt::print("  agreement, max |op - loop| / max |loop|:");
    for (size_t i = 0; i < results.size(); ++i) {
      const torch::Tensor a = op_results[i].to(torch::kFloat64), b = results[i].to(torch::kFloat64);
      const double rel = ((a - b).abs().max() / b.abs().max()).item<double>();
      j["agreement"][names[i]] = rel;
      fmt::print(" {} {:.2g}{}", names[i], rel, i + 1 < results.size() ? "," : "\n");
    }
    j["forward"]["aten_loop"] = to_json(fwd_loop);
    j["forward_backward"]["aten_loop"] = to_json(loop);
  }
  write_json(o.json, j);
}

}  // namespace rwkv::bench
