// `rwkv bench train CONFIG`: the training step of trainer/train/train_loop.cpp (forward, cross-entropy
// + L2Wrap, backward, global-norm clipping, Adam) on random tokens, against two references
// measured in the same run at the same shapes:
//   - the model's GEMMs alone (trainer/bench/flops_peak.h): MFU here is achieved / that rate, i.e. how
//     close the step gets to its own matrix products (the CPU target is 70%);
//   - the WKV op alone, forward+backward at (B, T, A), once per layer: its share of the step.
// On CUDA the step runs under bf16 autocast as training does, and MFU against the device's table
// peak is printed too when the device is known.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "kernels/cuda_runtime_info.h"
#include "rwkv/init.h"
#include "rwkv/model.h"
#include "rwkv/model_config.h"
#include "rwkv/wkv.h"
#include "trainer/train/autocast_scope.h"
#include "trainer/config/model_config_yaml.h"
#include "trainer/config/run_config.h"
#include "trainer/bench/bench.h"
#include "trainer/bench/flops_peak.h"
#include "trainer/train/l2wrap.h"
#include "trainer/optim/optimizer.h"

namespace rwkv::bench {

void bench_train(const TrainOptions& o) {
  if (o.micro_batch < 1 || o.ctx < 1 || o.steps < 1 || o.warmup < 0)
    throw std::invalid_argument("bench train: --micro-batch, --ctx and --steps must be positive, --warmup non-negative");
  check_json_path(o.json);
  const ModelConfig config = model_config_from_file(o.config);
  const torch::Device dev(o.device);
  if (dev.is_cuda() && !torch::cuda::is_available())
    throw std::invalid_argument("bench train: --device " + o.device + " but torch sees no CUDA device");
  const bool cuda = dev.is_cuda();
  torch::manual_seed(0);

  RWKV model(config, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  init_weights(model, InitOptions{.seed = 0, .emb_scale = 1e-4});
  trainer::NamedTensors params;
  for (const auto& kv : model->named_parameters()) params.emplace_back(kv.key(), kv.value());
  trainer::OptimizerConfig opt_config;  // the recipe's defaults (trainer/README.md "Optimizer and schedule")
  trainer::Adam adam(params, opt_config);
  const int64_t V = config.vocab_size, tokens = o.micro_batch * o.ctx;
  const torch::Tensor batch =
      torch::randint(V, {o.micro_batch, o.ctx + 1}, torch::TensorOptions().dtype(torch::kLong).device(dev));
  const torch::Tensor inputs = batch.narrow(1, 0, o.ctx), targets = batch.narrow(1, 1, o.ctx);

  // Phase times of every call (forward with the loss, backward, clipping + Adam), in ms.
  std::vector<double> phase_ms[3];
  const auto step = [&] {
    using Clock = std::chrono::steady_clock;
    auto mark = [&, last = Clock::now()](int phase) mutable {
      if (cuda) torch::cuda::synchronize();
      const auto now = Clock::now();
      phase_ms[phase].push_back(std::chrono::duration<double, std::milli>(now - last).count());
      last = now;
    };
    for (auto& [name, p] : params) p.mutable_grad() = torch::Tensor();
    torch::Tensor total;
    {
      trainer::AutocastScope autocast(cuda);
      const torch::Tensor logits = model->forward(inputs);
      const torch::Tensor loss =
          torch::nn::functional::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32), targets.reshape({-1}));
      total = trainer::l2wrap(loss, logits, opt_config.l2wrap);
    }
    mark(0);
    total.backward();
    mark(1);
    const double norm = trainer::global_grad_norm(params);
    trainer::clip_gradients(params, norm, opt_config.grad_clip);
    adam.step(1e-5, opt_config.lr_mult);
    mark(2);
  };
  fmt::print("training step, {} (L={} D={} V={}), micro-batch {} x ctx {} = {} tokens, {} on {}, {} threads\n",
             o.config, config.n_layer, config.n_embd, V, o.micro_batch, o.ctx, tokens, cuda ? "bf16 autocast" : "fp32",
             dev.str(), at::get_num_threads());
  const Timing t = time_runs(o.steps, o.warmup, dev, step);
  for (auto& [name, p] : params) p.mutable_grad() = torch::Tensor();
  // Median of each phase over the timed calls (the warm-up ones come first).
  double phase_median[3];
  for (int i = 0; i < 3; ++i) {
    std::vector<double> timed(phase_ms[i].end() - o.steps, phase_ms[i].end());
    std::sort(timed.begin(), timed.end());
    phase_median[i] = timed[timed.size() / 2];
  }

  // The WKV op alone at the step's shapes, once per layer.
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const auto io = cuda ? torch::kBFloat16 : torch::kFloat32;
  const int64_t A = config.att();
  const torch::Tensor td = torch::linspace(-5, 3, A, f32).requires_grad_(true);
  const torch::Tensor tf = torch::full({A}, -1.2, f32).requires_grad_(true);
  const torch::Tensor k = torch::randn({o.micro_batch, o.ctx, A}, f32).to(io).requires_grad_(true);
  const torch::Tensor v = torch::randn({o.micro_batch, o.ctx, A}, f32).to(io).requires_grad_(true);
  const torch::Tensor gy = torch::randn({o.micro_batch, o.ctx, A}, f32).to(io);
  const Timing wkv_t = time_runs(o.steps, o.warmup, dev, [&] {
    for (const auto& p : {td, tf, k, v}) p.mutable_grad() = torch::Tensor();
    rwkv::wkv(td, tf, k, v).y.backward(gy);
  });

  // The GEMMs alone at the step's shapes, in the step's dtype.
  const trainer::GemmRate gemm =
      trainer::measure_gemm_rate(config, tokens, torch::TensorOptions().dtype(io).device(dev), o.steps, o.warmup);

  const double flops_per_token = 3.0 * static_cast<double>(forward_flops_per_token(*model));
  const auto tflops = [&](double ms) { return flops_per_token * static_cast<double>(tokens) / (ms * 1e-3) / 1e12; };
  const double tok_s = static_cast<double>(tokens) / (t.median_ms * 1e-3);
  const double achieved = tflops(t.median_ms);
  const double wkv_share = static_cast<double>(config.n_layer) * wkv_t.median_ms / t.median_ms;

  fmt::print("  {:<32} {:>11} {:>11} {:>11}\n", "", "median", "min", "max");
  fmt::print("  {:<32} {:11.1f} {:11.1f} {:11.1f}\n", "step (ms)", t.median_ms, t.min_ms, t.max_ms);
  fmt::print("  {:<32} {:11.1f} {:11.1f} {:11.1f}\n", "tokens/s", tok_s, tokens / (t.max_ms * 1e-3),
             tokens / (t.min_ms * 1e-3));
  fmt::print("  {:<32} {:11.4g} {:11.4g} {:11.4g}\n", "achieved TFLOP/s (6(13LD²+VD))", achieved, tflops(t.max_ms),
             tflops(t.min_ms));
  fmt::print("  {:<32} {:11.4g} {:11.4g} {:11.4g}\n", "GEMMs alone TFLOP/s", gemm.median_tflops, gemm.min_tflops,
             gemm.max_tflops);
  fmt::print("  {:<32} {:11.2f} {:11.2f} {:11.2f}\n", "WKV op fwd+bwd x L (ms)", config.n_layer * wkv_t.median_ms,
             config.n_layer * wkv_t.min_ms, config.n_layer * wkv_t.max_ms);
  fmt::print("  phases (median ms): forward + loss {:.1f}, backward {:.1f}, clip + Adam {:.1f}\n", phase_median[0],
             phase_median[1], phase_median[2]);
  fmt::print("  GEMM time at the GEMMs-alone rate: {:.1f} ms of the step's {:.1f} ms\n",
             flops_per_token * static_cast<double>(tokens) / (gemm.median_tflops * 1e12) * 1e3, t.median_ms);
  fmt::print("  MFU vs the GEMMs alone: {:.1f}%   WKV share of the step: {:.1f}%\n", 100 * achieved / gemm.median_tflops,
             100 * wkv_share);
  nlohmann::json j = {{"bench", "train"},
                      {"config", o.config},
                      {"n_layer", config.n_layer}, {"n_embd", config.n_embd}, {"vocab_size", V},
                      {"micro_batch", o.micro_batch}, {"ctx", o.ctx}, {"tokens", tokens},
                      {"device", dev.str()}, {"dtype", cuda ? "bf16-autocast" : "fp32"},
                      {"threads", at::get_num_threads()},
                      {"step", to_json(t)},
                      {"tokens_per_s", tok_s},
                      {"achieved_tflops", achieved},
                      {"gemm_tflops", {{"median", gemm.median_tflops}, {"min", gemm.min_tflops}, {"max", gemm.max_tflops}}},
                      {"mfu_vs_gemm", achieved / gemm.median_tflops},
                      {"wkv_fwd_bwd_per_layer", to_json(wkv_t)},
                      {"wkv_share", wkv_share},
                      {"phases_median_ms", {{"forward_loss", phase_median[0]}, {"backward", phase_median[1]},
                                            {"clip_adam", phase_median[2]}}}};
  if (cuda) {
    const std::string name = kernels::cuda_device_name(dev.has_index() ? dev.index() : 0);
    if (const auto peak = trainer::known_bf16_peak_tflops(name)) {
      fmt::print("  MFU vs the {} dense bf16 peak ({} TFLOP/s): {:.1f}%\n", name, *peak, 100 * achieved / *peak);
      j["table_peak_tflops"] = *peak;
      j["mfu_vs_table"] = achieved / *peak;
    }
  }
  write_json(o.json, j);
}

}  // namespace rwkv::bench
