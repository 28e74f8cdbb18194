#include "trainer/bench/bench_loss.h"

#include <fmt/format.h>

#include "trainer/bench/bench.h"
#include "trainer/bench/cpu_memory_meter.h"
#include "trainer/train/cross_entropy_l2wrap.h"

namespace rwkv::bench {
namespace {

// L2Wrap as the trainer had it before the fused op: the loss passes through; the backward puts
// grad_loss·factor/positions·max at the arg-max of a zeroed logits-sized tensor.
class UnfusedL2Wrap : public torch::autograd::Function<UnfusedL2Wrap> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& loss,
                               const torch::Tensor& logits, double factor) {
    const auto [max_values, max_index] = logits.detach().max(-1, /*keepdim=*/true);
    ctx->save_for_backward({max_values, max_index});
    ctx->saved_data["scale"] = factor / static_cast<double>(logits.numel() / logits.size(-1));
    ctx->saved_data["sizes"] = logits.sizes().vec();
    return loss.clone();
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& max_values = saved[0];
    const double scale = ctx->saved_data["scale"].toDouble();
    auto grad = torch::zeros(ctx->saved_data["sizes"].toIntVector(), max_values.options());
    grad.scatter_(-1, saved[1], max_values * (grad_outputs[0].to(max_values.scalar_type()) * scale));
    return {grad_outputs[0], grad, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor unfused_cross_entropy_l2wrap(const torch::Tensor& logits, const torch::Tensor& targets, double factor) {
  const auto acc = logits.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const auto ce = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(acc),
                                                       targets.reshape({-1}));
  return factor > 0 ? UnfusedL2Wrap::apply(ce, logits, factor) : ce;
}

void bench_loss(const LossOptions& o) {
  if (o.runs < 1 || o.warmup < 0 || o.rows < 1 || o.vocab < 1 || o.factor < 0)
    throw std::invalid_argument(
        "bench loss: --rows, --vocab and --runs must be positive, --warmup and --factor non-negative");
  const torch::Device dev = device_flag(o.device, "bench loss");
  const auto dtype = o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  torch::manual_seed(0);
  // Logits spread as a model's (a few units), targets uniform.
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const torch::Tensor logits = (torch::randn({o.rows, o.vocab}, f32) * 3).to(dtype).requires_grad_(true);
  const torch::Tensor targets = torch::randint(o.vocab, {o.rows}, f32.dtype(torch::kLong));
  std::vector<torch::Tensor> results;  // loss, gradient of the last run
  const auto step = [&](bool fused) {
    logits.mutable_grad() = torch::Tensor();
    const auto loss = fused ? trainer::cross_entropy_l2wrap(logits, targets, o.factor)
                            : unfused_cross_entropy_l2wrap(logits, targets, o.factor);
    loss.backward();
    results = {loss.detach(), logits.grad()};
  };
  // CPU: the peak of the tensors one forward+backward allocates beyond the logits (the gradient
  // included, which both must produce). -1 on CUDA.
  const auto peak_of = [&](bool fused) -> int64_t {
    if (!dev.is_cpu()) return -1;
    logits.mutable_grad() = torch::Tensor();
    trainer::CpuMemoryMeter meter;
    step(fused);
    return meter.peak();
  };
  fmt::print("training loss (cross-entropy + L2Wrap {}), {} rows x vocab {}, {} logits on {}, {} threads, {} runs "
             "after {} warm-up\n",
             o.factor, o.rows, o.vocab, o.dtype, dev.str(), at::get_num_threads(), o.runs, o.warmup);
  const Timing fused = time_runs(o.runs, o.warmup, dev, [&] { step(true); });
  const auto fused_results = results;
  const Timing unfused = time_runs(o.runs, o.warmup, dev, [&] { step(false); });
  const int64_t fused_peak = peak_of(true), unfused_peak = peak_of(false);

  fmt::print("  {:<28} {:>11} {:>11} {:>11} {:>14}\n", "fwd+bwd (ms)", "median", "min", "max", "peak MiB");
  const auto row = [](const char* name, const Timing& t, int64_t peak) {
    fmt::print("  {:<28} {:11.2f} {:11.2f} {:11.2f} {:>14}\n", name, t.median_ms, t.min_ms, t.max_ms,
               peak >= 0 ? fmt::format("{:.1f}", static_cast<double>(peak) / (1 << 20)) : "-");
  };
  row("fused op", fused, fused_peak);
  row("unfused (fp32 copy + L2Wrap)", unfused, unfused_peak);
  const double loss_diff = std::abs(fused_results[0].item<double>() - results[0].item<double>());
  const double grad_rel = ((fused_results[1].to(torch::kFloat64) - results[1].to(torch::kFloat64)).abs().max() /
                           results[1].to(torch::kFloat64).abs().max())
                              .item<double>();
  fmt::print("  speed-up (median unfused / median fused): {:.2f}x", unfused.median_ms / fused.median_ms);
  if (fused_peak > 0) fmt::print(", peak memory unfused / fused: {:.2f}x", static_cast<double>(unfused_peak) / fused_peak);
  fmt::print("\n  agreement: |loss diff| {:.2g}, max |grad diff| / max |grad| {:.2g}\n", loss_diff, grad_rel);
  nlohmann::json j = {{"bench", "loss"},
                      {"rows", o.rows},
                      {"vocab", o.vocab},
                      {"factor", o.factor},
                      {"dtype", o.dtype},
                      {"device", dev.str()},
                      {"threads", at::get_num_threads()},
                      {"fused", to_json(fused)},
                      {"unfused", to_json(unfused)},
                      {"agreement", {{"loss_abs", loss_diff}, {"grad_rel", grad_rel}}}};
  if (fused_peak >= 0) j["peak_bytes"] = {{"fused", fused_peak}, {"unfused", unfused_peak}};
  write_json(o.json, j);
}

}  // namespace rwkv::bench
