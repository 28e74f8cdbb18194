// `rwkv bench train` times the training step itself: the steps of TrainBench (what the benchmark
// runs, trainer/bench/bench_train.h) and those of run_training, from the same initial weights on
// the same batches, give bit-identical losses and weights on the CPU, with the config's gradient
// accumulation, activation checkpointing, clipping, warmup, LR multipliers and ZeRO stage. And the
// benchmark's config is the run config with only the asked-for changes.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <fstream>

#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"
#include "trainer/bench/bench_train.h"
#include "trainer/train/train_loop.h"

using namespace rwkv::trainer;
namespace tt = rwkv::test::trainer;

namespace {

// L = 2, D = 32, V = 16; 3 micro-batches of 2 samples of 8 tokens per step, 5 steps; a clip low
// enough to act and a warmup, so a benchmark on default settings would take other steps.
std::string write_config(const rwkv::test::TempDir& dir) {
  const auto path = dir / "run.yaml";
  std::ofstream(path) << fmt::format(R"(model: {{n_layer: 2, n_embd: 32, vocab_size: 16}}
data: {{path: synthetic, ctx_len: 8}}
train: {{run_dir: "{}", micro_batch: 2, grad_accum: 3, epoch_samples: 48, epoch_count: 2, max_steps: 5, seed: 5,
        device: cpu, activation_checkpointing: true}}
optimizer: {{lr_init: 4.0e-3, lr_final: 1.0e-3, warmup_steps: 2, grad_clip: 0.5, lr_mult: {{time_decay: 2.0, time_first: 4.0}}}}
checkpoint: {{every_steps: 100}}
log: {{every_steps: 1}}
)",
                                     (dir / "run").string());
  return path.string();
}

std::map<std::string, torch::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : m.named_parameters()) out[kv.key()] = kv.value().detach().clone();
  return out;
}

}  // namespace

TEST_CASE("bench train's steps are run_training's steps: same losses, bit-identical weights", "[bench]") {
  tt::OneThread one;
  const int64_t zero_stage = GENERATE(0, 2);
  INFO("train.zero_stage " << zero_stage);
  rwkv::test::TempDir dir("rwkv-bench-step");
  const std::string path = write_config(dir);
  const std::string zero = fmt::format("train.zero_stage={}", zero_stage);

  const RunConfig cfg = load_run_config(path, {parse_override(zero)});
  TrainEnv env = tt::make_rwkv_env(cfg, /*branches=*/3);  // the model as `rwkv train` builds it
  const auto initial = snapshot(*env.model);
  const TrainReport loop = run_training(cfg, env, tt::quiet());
  REQUIRE(loop.losses.size() == 5);

  rwkv::bench::TrainOptions o;
  o.config = path;
  o.device = "cpu";
  o.sets = {zero};
  rwkv::bench::TrainBench bench(rwkv::bench::bench_train_config(o), torch::kCPU);
  REQUIRE(bench.micro_batches() == 3);
  const auto bench_initial = snapshot(*bench.model().model);
  REQUIRE(bench_initial.size() == initial.size());
  for (const auto& [name, w] : bench_initial) CHECK(torch::equal(w, initial.at(name)));  // the same start
  tt::MarkovSource source(16, 3, 8);
  bool clipped = false;
  for (int64_t step = 0; step < 5; ++step) {
    // One process reads the global batch's samples in order: step·6 + micro·2 + row.
    const auto r = bench.step([&](int64_t micro) { return source.samples(step * 6 + micro * 2, 2); });
    INFO("step " << step);
    REQUIRE(r.applied);
    CHECK(r.loss == loop.losses[static_cast<size_t>(step)]);  // bit-exact
    clipped = clipped || r.grad_norm > 0.5;
  }
  CHECK(clipped);  // the clip acted, so ignoring train.grad_clip would show
  const auto bench_weights = snapshot(*bench.model().model), loop_weights = snapshot(*env.model);
  bool moved = false;
  for (const auto& [name, w] : loop_weights) {
    INFO(name);
    CHECK(torch::equal(bench_weights.at(name), w));
    moved = moved || !torch::equal(w, initial.at(name));
  }
  CHECK(moved);
}

TEST_CASE("bench train's config: the run config, the first stage at --micro-batch x --ctx, --set applied", "[bench]") {
  rwkv::test::TempDir dir("rwkv-bench-config");
  rwkv::bench::TrainOptions o;
  o.config = write_config(dir);
  o.device = "cpu";
  o.micro_batch = 3;
  o.ctx = 5;
  o.sets = {"train.zero_stage=1", "optimizer.l2wrap=0"};
  const RunConfig cfg = rwkv::bench::bench_train_config(o);
  const RunConfig run = load_run_config(o.config);
  const Stage& st = cfg.stages.front();
  CHECK(st.micro_batch == 3);
  CHECK(st.ctx_len == 5);
  CHECK(st.grad_accum == 3);
  CHECK(st.lr_init == run.stages.front().lr_init);
  CHECK(st.warmup_steps == 2);
  CHECK(st.lr_mult == run.stages.front().lr_mult);
  CHECK(cfg.optimizer.grad_clip == 0.5);
  CHECK(cfg.optimizer.l2wrap == 0);
  CHECK(cfg.train.zero_stage == 1);
  CHECK(cfg.train.activation_checkpointing);

  // A size config asks for bf16 on CUDA; on the CPU the step is fp32 (precision auto).
  std::ofstream(dir / "bf16.yaml") << "model: {n_layer: 1, n_embd: 32, vocab_size: 16}\n"
                                      "data: {path: x, ctx_len: 8}\n"
                                      "train: {run_dir: r, micro_batch: 2, epoch_count: 1, device: cuda, precision: bf16}\n"
                                      "optimizer: {lr_init: 1.0e-3}\n";
  o = {};
  o.config = (dir / "bf16.yaml").string();
  o.device = "cpu";
  const RunConfig cpu = rwkv::bench::bench_train_config(o);
  CHECK(cpu.train.device == DeviceKind::cpu);
  CHECK(cpu.train.precision == Precision::auto_);
  CHECK(run_device(cpu).is_cpu());

  // A YAML with only a model: section gets the documented run around it.
  std::ofstream(dir / "model.yaml") << "model: {n_layer: 1, n_embd: 32, vocab_size: 16}\n";
  o.config = (dir / "model.yaml").string();
  const RunConfig bare = rwkv::bench::bench_train_config(o);
  CHECK(bare.stages.front().micro_batch == 8);
  CHECK(bare.stages.front().ctx_len == 512);
  CHECK(bare.stages.front().grad_accum == 1);
  CHECK(bare.optimizer.lr_init == 6e-4);
  CHECK(bare.optimizer.l2wrap == OptimizerConfig{}.l2wrap);

  // A misspelt field is the config's error, with the file.
  o.sets = {"train.zero_stag=1"};
  CHECK_THROWS_WITH(rwkv::bench::bench_train_config(o), Catch::Contains("model.yaml") && Catch::Contains("zero_stag"));
}
