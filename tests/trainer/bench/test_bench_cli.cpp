// `rwkv bench train|generate|loss` as subprocesses on a tiny model: the JSON figures obey the formulas
// they are defined by (FLOPs per token of rwkv/README.md "Shapes", the RNN state's size from the shape,
// the fused loss's agreement with its peer and the memory it saves), a
// run config's accumulation and settings reach the timed step, and bad arguments exit non-zero with
// a message. Nothing here asserts a speed.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace {

using rwkv::test::TempDir;

const int64_t kL = 2, kD = 32, kV = 64;

std::string tiny_config(const TempDir& dir) {
  std::ofstream(dir / "tiny.yaml") << fmt::format("model:\n  n_layer: {}\n  n_embd: {}\n  vocab_size: {}\n", kL, kD, kV);
  return (dir / "tiny.yaml").string();
}

nlohmann::json run_json(const std::string& args, const std::string& json_path) {
  std::string out;
  const int rc = rwkv::test::run(fmt::format("OMP_NUM_THREADS=1 {} bench {} --json {}",
                                             rwkv::test::rwkv_binary().string(), args, json_path),
                                 &out);
  INFO(out);
  REQUIRE(rc == 0);
  std::ifstream in(json_path);
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("bench train: tokens/s and FLOP/s follow from the step time and 6(13LD² + VD)", "[bench]") {
  TempDir dir("rwkv-bench-train");
  const auto j = run_json(fmt::format("train {} --micro-batch 2 --ctx 16 --steps 2 --warmup 0", tiny_config(dir)),
                          (dir / "t.json").string());
  const double seconds = j.at("step").at("median_ms").get<double>() * 1e-3;
  CHECK(j.at("tokens").get<int64_t>() == 32);
  CHECK(j.at("tokens_per_s").get<double>() == Approx(32 / seconds));
  const double flops_per_token = 6.0 * (13.0 * kL * kD * kD + kV * kD);
  CHECK(j.at("achieved_tflops").get<double>() == Approx(flops_per_token * 32 / seconds / 1e12));
  CHECK(j.at("mfu_vs_gemm").get<double>() ==
        Approx(j.at("achieved_tflops").get<double>() / j.at("gemm_tflops").at("median").get<double>()));
  CHECK(j.at("wkv_share").get<double>() > 0);
  CHECK(j.at("step").at("min_ms").get<double>() <= j.at("step").at("max_ms").get<double>());
}

TEST_CASE("bench generate: the carried state is 5·L·D floats whatever the context", "[bench]") {
  TempDir dir("rwkv-bench-generate");
  const auto j = run_json(fmt::format("generate {} --ctx 0,40 --chunk 16 --tokens 2 --warmup 1", tiny_config(dir)),
                          (dir / "g.json").string());
  REQUIRE(j.at("contexts").size() == 2);
  for (const auto& row : j.at("contexts")) {
    CHECK(row.at("state_bytes").get<int64_t>() == 5 * kL * kD * 4);
    CHECK(row.at("tokens_per_s").get<double>() > 0);
    CHECK(row.at("rss_gib").get<double>() > 0);
  }
  CHECK(j.at("contexts")[1].at("ctx").get<int64_t>() == 40);
}

TEST_CASE("bench loss: the fused loss agrees with the unfused one and allocates less", "[bench]") {
  TempDir dir("rwkv-bench-loss");
  const auto j = run_json("loss --rows 24 --vocab 1000 --runs 2 --warmup 0", (dir / "l.json").string());
  CHECK(j.at("agreement").at("loss_abs").get<double>() < 1e-5);
  CHECK(j.at("agreement").at("grad_rel").get<double>() < 1e-5);
  // fp32 on the CPU: both allocate the gradient (24·1000·4 bytes); the unfused one also its
  // log-softmax, the cross-entropy's gradient and L2Wrap's zeroed one.
  const int64_t grad_bytes = 24 * 1000 * 4;
  CHECK(j.at("peak_bytes").at("fused").get<int64_t>() >= grad_bytes);
  CHECK(j.at("peak_bytes").at("fused").get<int64_t>() < 2 * grad_bytes);
  CHECK(j.at("peak_bytes").at("unfused").get<int64_t>() >= 3 * grad_bytes);
}

TEST_CASE("bench: bad arguments exit non-zero naming the problem", "[bench]") {
  TempDir dir("rwkv-bench-bad");
  const std::string bin = rwkv::test::rwkv_binary().string(), cfg = tiny_config(dir);
  const auto fails_with = [&](const std::string& args, const std::string& message) {
    std::string out;
    const int rc = rwkv::test::run(bin + " bench " + args, &out);
    INFO(args << "\n" << out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains(message));
  };
  fails_with("generate " + (dir / "missing.yaml").string(), "missing.yaml does not exist");
  fails_with("generate " + cfg + " --ctx=10,-5", "--ctx -5 is negative");
  fails_with("train " + cfg + " --micro-batch 0", "--micro-batch, --ctx and --steps must be positive");
  fails_with("loss --rows 0", "--rows, --vocab and --runs must be positive");
  fails_with("train " + cfg + " --json " + (dir / "no-such-dir" / "t.json").string() + " --steps 1 --warmup 0",
             "no-such-dir does not exist");  // before any work
}

TEST_CASE("bench train runs the run config's step: its micro-batches per step and settings in the figures", "[bench]") {
  TempDir dir("rwkv-bench-train-run");
  std::ofstream(dir / "run.yaml") << fmt::format(R"(model: {{n_layer: {}, n_embd: {}, vocab_size: {}}}
data: {{path: unused, ctx_len: 64}}
train: {{run_dir: unused, micro_batch: 4, grad_accum: 2, epoch_samples: 40, epoch_count: 1, activation_checkpointing: true}}
optimizer: {{lr_init: 1.0e-3}}
)",
                                                 kL, kD, kV);
  const auto j = run_json(fmt::format("train {} --micro-batch 2 --ctx 16 --steps 2 --warmup 1 --device cpu --set train.zero_stage=1",
                                      (dir / "run.yaml").string()),
                          (dir / "t.json").string());
  CHECK(j.at("grad_accum").get<int64_t>() == 2);
  CHECK(j.at("micro_batch").get<int64_t>() == 2);
  CHECK(j.at("ctx").get<int64_t>() == 16);
  CHECK(j.at("tokens").get<int64_t>() == 64);  // per step: 2 micro-batches of 2 x 16
  const double seconds = j.at("step").at("median_ms").get<double>() * 1e-3;
  CHECK(j.at("tokens_per_s").get<double>() == Approx(64 / seconds));
  CHECK(j.at("activation_checkpointing").get<bool>());
  CHECK(j.at("zero_stage").get<int64_t>() == 1);
  CHECK(j.at("dtype").get<std::string>() == "fp32");
  CHECK(j.at("segment").get<int64_t>() == 16);  // whole samples
  CHECK(j.at("step_peak_bytes").get<int64_t>() > 0);
  const auto losses = j.at("losses").get<std::vector<double>>();
  REQUIRE(losses.size() == 3);  // warm-up included
  // Random tokens: the first step (before any update) starts near ln V; the same batch is then
  // trained on at the config's lr_init, so each later step's loss is finite and lower.
  CHECK(losses[0] == Approx(std::log(static_cast<double>(kV))).margin(0.5));
  for (size_t i = 1; i < losses.size(); ++i) {
    CHECK(std::isfinite(losses[i]));
    CHECK(losses[i] < losses[i - 1]);
  }

  // In segments: the same first loss (the same weights and batch; segments change no value).
  const auto seg = run_json(fmt::format("train {} --micro-batch 2 --ctx 16 --segment 5 --steps 1 --warmup 0 --device cpu "
                                        "--set train.zero_stage=1 --force",
                                        (dir / "run.yaml").string()),
                            (dir / "t.json").string());
  CHECK(seg.at("segment").get<int64_t>() == 5);
  CHECK(seg.at("losses").at(0).get<double>() == Approx(losses[0]).epsilon(1e-6));
}
