// Per-block activation checkpointing (rwkv/block_recompute.h): the same loss and gradients as the
// plain model, the same training run through the loop, less measured memory; and the memory
// planner's activation estimates (trainer/dist/memory_plan.h) against measured peaks of real CPU steps.
#include <catch2/catch.hpp>

#include <ATen/autocast_mode.h>
#include <fmt/format.h>

#include "rwkv/block_recompute.h"
#include "rwkv/init.h"
#include "rwkv/model.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"
#include "trainer/bench/cpu_memory_meter.h"
#include "trainer/dist/memory_plan.h"

using rwkv::trainer::CpuMemoryMeter;
namespace tt = rwkv::test::trainer;

namespace {

rwkv::RWKV make_model(const rwkv::ModelConfig& c, uint64_t seed) {
  rwkv::RWKV model(c);
  rwkv::init_weights(model, rwkv::InitOptions{.seed = seed, .emb_scale = 0.5});
  return model;
}

torch::Tensor random_tokens(int64_t vocab, int64_t B, int64_t T, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(vocab, {B, T}, gen, torch::kLong);
}

torch::Tensor loss_of(rwkv::RWKV& model, const torch::Tensor& batch, bool recompute) {
  const int64_t T = batch.size(1) - 1, V = model->config().vocab_size;
  const auto inputs = batch.narrow(1, 0, T);
  const auto logits = recompute ? rwkv::forward_recomputing_blocks(*model, inputs) : model->forward(inputs);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, V}), batch.narrow(1, 1, T).reshape({-1}));
}

struct Measured {
  double kept = 0;   // bytes alive after forward + loss (what autograd keeps for backward)
  double peak = 0;   // highest bytes alive during forward + loss + backward
  double grads = 0;  // bytes of the parameter gradients at the end
};

// One fp32 training step's tensor memory on the CPU, counted from before the forward (the weights
// and the batch exist already and are not counted).
Measured measure_step(const rwkv::ModelConfig& c, int64_t B, int64_t T, bool recompute) {
  auto model = make_model(c, 1);
  const auto batch = random_tokens(c.vocab_size, B, T + 1, 2);
  Measured m;
  CpuMemoryMeter meter;
  {
    torch::Tensor loss = loss_of(model, batch, recompute);
    m.kept = static_cast<double>(meter.current());
    loss.backward();
  }
  m.peak = static_cast<double>(meter.peak());
  for (const auto& p : model->parameters()) m.grads += static_cast<double>(p.grad().numel() * 4);
  return m;
}

}  // namespace

TEST_CASE("block recomputation gives the plain model's loss and gradients", "[model]") {
  rwkv::ModelConfig c{.n_layer = 3, .n_embd = 32, .vocab_size = 64, .dim_att = 0, .dim_ffn = 96};
  auto model = make_model(c, 3);
  const auto batch = random_tokens(c.vocab_size, 2, 17, 4);

  const auto plain = loss_of(model, batch, false);
  plain.backward();
  std::map<std::string, torch::Tensor> grads;
  for (const auto& kv : model->named_parameters()) grads[kv.key()] = kv.value().grad().clone();
  model->zero_grad();

  const auto recomputed = loss_of(model, batch, true);
  recomputed.backward();
  CHECK(recomputed.item<double>() == plain.item<double>());  // the forward is the same arithmetic
  for (const auto& kv : model->named_parameters()) {
    INFO(kv.key());
    REQUIRE(kv.value().grad().defined());
    // The recomputed block runs the same CPU ops on the same inputs, so its backward is the same
    // arithmetic too: bit-identical gradients.
    CHECK(torch::equal(kv.value().grad(), grads.at(kv.key())));
  }

  // Under NoGradGuard it is the plain forward.
  torch::NoGradGuard no_grad;
  const auto inputs = batch.narrow(1, 0, 16);
  CHECK(torch::equal(rwkv::forward_recomputing_blocks(*model, inputs), model->forward(inputs)));
}

TEST_CASE("train.activation_checkpointing trains the same run as without it", "[model]") {
  rwkv::test::TempDir dir("rwkv-recompute-run");
  const tt::OneThread one_thread;
  const auto run = [&](bool recompute, const std::string& run_dir, int max_steps) {
    const auto cfg = rwkv::trainer::parse_run_config(
        tt::config_yaml((dir / run_dir).string()), "test.yaml",
        {rwkv::trainer::parse_override("model.n_layer=2"),
         rwkv::trainer::parse_override(fmt::format("train.max_steps={}", max_steps)),
         rwkv::trainer::parse_override(fmt::format("train.activation_checkpointing={}", recompute))});
    auto env = tt::make_rwkv_env(cfg);
    const auto report = rwkv::trainer::run_training(cfg, env, tt::quiet());
    std::map<std::string, torch::Tensor> weights;
    for (const auto& kv : env.model->named_parameters()) weights[kv.key()] = kv.value().detach().clone();
    return std::make_pair(report.losses, weights);
  };
  const auto [plain_losses, plain_weights] = run(false, "plain", 5);
  const auto [ckpt_losses, ckpt_weights] = run(true, "ckpt", 5);
  REQUIRE(plain_losses.size() == 5);
  CHECK(ckpt_losses == plain_losses);
  for (const auto& [name, w] : plain_weights) {
    INFO(name);
    CHECK(torch::equal(ckpt_weights.at(name), w));
  }
  // Switching it on when resuming is a safe change, and the run continues unchanged.
  run(false, "switch", 3);
  const auto [resumed_losses, resumed_weights] = run(true, "switch", 5);
  CHECK(resumed_losses == std::vector<double>(plain_losses.begin() + 3, plain_losses.end()));
  for (const auto& [name, w] : plain_weights) {
    INFO(name);
    CHECK(torch::equal(resumed_weights.at(name), w));
  }
}

TEST_CASE("block recomputation lowers the measured peak memory of a step", "[model]") {
  const tt::OneThread one_thread;
  // Activations dominate: 8 blocks, 4 x 512 tokens, a small vocabulary.
  rwkv::ModelConfig c{.n_layer = 8, .n_embd = 64, .vocab_size = 64};
  const Measured plain = measure_step(c, 4, 512, false);
  const Measured ckpt = measure_step(c, 4, 512, true);
  INFO(fmt::format("kept after forward: plain {:.2f} MB, recompute {:.2f} MB; peak: plain {:.2f} MB, recompute {:.2f} MB",
                   plain.kept / 1e6, ckpt.kept / 1e6, plain.peak / 1e6, ckpt.peak / 1e6));
  CHECK(ckpt.grads == plain.grads);
  CHECK(ckpt.kept < plain.kept / 4);
  CHECK(ckpt.peak < plain.peak / 2);
}

TEST_CASE("block recomputation under CUDA bf16 autocast replays the forward's precision", "[model][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  rwkv::ModelConfig c{.n_layer = 2, .n_embd = 64, .vocab_size = 128};
  auto model = make_model(c, 5);
  model->to(torch::kCUDA);
  const auto batch = random_tokens(c.vocab_size, 2, 65, 6).to(torch::kCUDA);
  const auto step = [&](bool recompute) {
    model->zero_grad();
    torch::Tensor loss;
    // As the training loop does: autocast around forward and loss only, backward outside it.
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    loss = loss_of(model, batch, recompute);
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
    loss.backward();
    std::map<std::string, torch::Tensor> grads;
    for (const auto& kv : model->named_parameters()) grads[kv.key()] = kv.value().grad().clone();
    return std::make_pair(loss.item<double>(), grads);
  };
  const auto [plain_loss, plain_grads] = step(false);
  const auto [ckpt_loss, ckpt_grads] = step(true);
  CHECK(ckpt_loss == plain_loss);
  for (const auto& [name, g] : plain_grads) {
    INFO(name);
    // The recompute reruns the same bf16 kernels on the same inputs; a recompute in fp32 (autocast
    // not replayed) would differ at bf16's resolution (~4e-3 relative), 40x this bound.
    const double scale = g.abs().max().item<double>() + 1e-12;
    CHECK((ckpt_grads.at(name) - g).abs().max().item<double>() <= 1e-4 * scale);
  }
}

TEST_CASE("memory plan: activation estimates against measured peaks of real CPU steps", "[model]") {
  const tt::OneThread one_thread;
  struct Case {
    rwkv::ModelConfig model;
    int64_t B, T;
  };
  const Case cases[] = {
      {{.n_layer = 4, .n_embd = 64, .vocab_size = 256}, 4, 256},
      {{.n_layer = 2, .n_embd = 128, .vocab_size = 512}, 2, 512},
      {{.n_layer = 6, .n_embd = 96, .vocab_size = 1000, .dim_att = 64, .dim_ffn = 200}, 2, 256},
  };
  std::string table = "(L, D, V, A, F) B x T, recompute: kept after forward measured / planned; step peak measured / planned\n";
  for (const auto& c : cases) {
    for (bool recompute : {false, true}) {
      const Measured m = measure_step(c.model, c.B, c.T, recompute);
      rwkv::PlanRequest req;
      req.model = c.model;
      req.micro_batch = c.B;
      req.ctx_len = c.T;
      req.compute_bytes = 4;  // the CPU path: fp32, the weights are the master copy
      const auto e = rwkv::estimate_memory(req, rwkv::Sharding::DDP);
      // After forward + cross-entropy: the activations (without the block a recompute rebuilds
      // only in backward) and the fp32 log-softmax.
      const double tokens = static_cast<double>(c.B * c.T);
      const double planned_kept = (recompute ? e.activations_ckpt - e.block : e.activations) +
                                  tokens * static_cast<double>(c.model.vocab_size) * 4;
      // The step's peak: the plan's total less what existed before the step (weights, and the
      // Adam moments a real run would hold).
      const double planned_peak = e.total(recompute) - e.weights - e.adam - e.master;
      table += fmt::format("({}, {}, {}, {}, {}) {} x {}, {}: {:.2f} / {:.2f} MB ({:+.0f}%); {:.2f} / {:.2f} MB ({:+.0f}%)\n",
                           c.model.n_layer, c.model.n_embd, c.model.vocab_size, c.model.att(), c.model.ffn(), c.B,
                           c.T, recompute ? "yes" : "no", m.kept / 1e6, planned_kept / 1e6,
                           100 * (m.kept / planned_kept - 1), m.peak / 1e6, planned_peak / 1e6,
                           100 * (m.peak / planned_peak - 1));
      INFO(table);
      CHECK(m.grads == e.grads);  // the plan's parameter count is the module's
      // The plan is for sizing GPUs, so it must not fall short: measured within 5% above it at most,
      // and no more than 35% below it.
      CHECK(m.peak <= 1.05 * planned_peak);
      CHECK(m.peak >= 0.65 * planned_peak);
      CHECK(m.kept <= 1.05 * planned_kept);
      CHECK(m.kept >= 0.65 * planned_kept);
    }
  }
  WARN(table);
}
