// `rwkv bench wkv`: forward+backward time of the WKV op against a straightforward ATen
// implementation (per-timestep tensor ops over (B, C), autograd for the backward) measured in
// the same run on the same inputs. Benchmarks measure, tests assert (DESIGN.md): this prints
// figures and the agreement of the two, it checks nothing.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "rwkv/wkv.h"
#include "trainer/commands.h"

namespace rwkv::cli {
namespace {

struct WkvBenchOptions {
  int64_t B = 8, T = 1024, C = 768;
  int runs = 5, warmup = 1;
  std::string device = "cpu", dtype = "fp32";
};

// The peer: RECIPE §3's stable recurrence as one ATen op per arithmetic step.
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

struct Timing {
  double median, min, max;
};

Timing time_runs(const WkvBenchOptions& o, const torch::Device& dev, const std::function<void()>& fn) {
  const auto sync = [&] {
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < o.warmup; ++i) fn();
  sync();
  std::vector<double> ms;
  for (int i = 0; i < o.runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    sync();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return Timing{ms[ms.size() / 2], ms.front(), ms.back()};
}

void bench_wkv(const WkvBenchOptions& o) {
  if (o.runs < 1 || o.warmup < 0 || o.B < 1 || o.T < 1 || o.C < 1)
    throw std::invalid_argument("bench wkv: --B, --T, --C and --runs must be positive, --warmup non-negative");
  const torch::Device dev(o.device);
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
  const auto step = [&](bool op) {
    for (const auto& p : {td, tf, k, v}) p.mutable_grad() = torch::Tensor();
    const torch::Tensor y = op ? rwkv::wkv(td, tf, k, v).y : wkv_aten_loop(td, tf, k, v);
    (y.to(torch::kFloat32) * r).sum().backward();
    results = {y.detach(), td.grad(), tf.grad(), k.grad(), v.grad()};
  };
  fmt::print("wkv forward+backward, B={} T={} C={}, {} on {}, {} threads, {} runs after {} warm-up\n", o.B, o.T, o.C,
             o.dtype, dev.str(), at::get_num_threads(), o.runs, o.warmup);
  const Timing op = time_runs(o, dev, [&] { step(true); });
  const auto op_results = results;
  const Timing loop = time_runs(o, dev, [&] { step(false); });
  const auto report = [](const char* name, const Timing& t) {
    fmt::print("  {:<10} median {:9.2f} ms   min {:9.2f}   max {:9.2f}\n", name, t.median, t.min, t.max);
  };
  report("wkv op", op);
  report("aten loop", loop);
  fmt::print("  speed-up (median aten loop / median wkv op): {:.1f}x\n", loop.median / op.median);
  const char* names[] = {"y", "d time_decay", "d time_first", "d k", "d v"};
  fmt::print("  agreement, max |op - loop| / max |loop|:");
  for (size_t i = 0; i < results.size(); ++i) {
    const torch::Tensor a = op_results[i].to(torch::kFloat64), b = results[i].to(torch::kFloat64);
    fmt::print(" {} {:.2g}{}", names[i], ((a - b).abs().max() / b.abs().max()).item<double>(),
               i + 1 < results.size() ? "," : "\n");
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Micro-benchmarks (figures, not tests)");
  bench->require_subcommand(1);
  static WkvBenchOptions opts_storage;  // CLI11 writes options into storage that outlives parsing
  WkvBenchOptions* opts = &opts_storage;
  auto* wkv = bench->add_subcommand("wkv", "WKV op forward+backward vs a per-timestep ATen implementation");
  wkv->add_option("--B", opts->B, "batch")->capture_default_str();
  wkv->add_option("--T", opts->T, "sequence length")->capture_default_str();
  wkv->add_option("--C", opts->C, "channels")->capture_default_str();
  wkv->add_option("--runs", opts->runs, "timed runs")->capture_default_str();
  wkv->add_option("--warmup", opts->warmup, "untimed runs first")->capture_default_str();
  wkv->add_option("--device", opts->device, "cpu or cuda[:N]")->capture_default_str();
  wkv->add_option("--dtype", opts->dtype, "k/v dtype")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  wkv->callback([opts] { bench_wkv(*opts); });
}

}  // namespace rwkv::cli
