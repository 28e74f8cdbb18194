// The cost model of `rwkv bench predict` (trainer/bench/cost_model.h): its arithmetic against hand
// computations for given inputs, its FLOPs against a count from the shapes, its census fit against
// a census at a third size, and the command's JSON against the same formulas. Nothing here is a
// speed: the model is arithmetic on counts.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "rwkv/model_config.h"
#include "tests/support/test_util.h"
#include "trainer/bench/cost_model.h"
#include "trainer/bench/op_census.h"

namespace {

using rwkv::bench::BlockTraffic;
using rwkv::bench::GpuModel;
using rwkv::bench::ModelFigures;
using rwkv::bench::PhaseCost;
using rwkv::bench::StepPrediction;
using rwkv::bench::StepShape;

// Round figures so that every phase below is a hand computation: 1 TFLOP/s, 1 GB/s, 1 µs a launch.
GpuModel round_gpu() {
  GpuModel g;
  g.name = "test";
  g.gemm_tflops = 1;
  g.table_tflops = 2;
  g.bandwidth_gbs = 1;
  g.launch_us = 1;
  g.sync_us = 5;
  g.clock_ghz = 1;
  g.wkv.sms = 1;
  g.wkv.resident_threads = 4;
  g.wkv.cycles_per_step = 1000;
  g.wkv.issue_per_sm_cycle = 1e9;  // the WKV walks bound by their chain, not by issue
  return g;
}

ModelFigures round_model() {
  ModelFigures m;
  m.n_layer = 2;
  m.n_embd = 4;
  m.att = 4;
  m.vocab = 10;
  m.parameters = 1000;
  m.parameter_tensors = 10;
  m.forward_flops_per_token = 1e6;
  return m;
}

BlockTraffic round_block() {
  BlockTraffic b;
  b.forward = {7, 20, 1, 100, 1000, 10, 50};
  b.backward = {14, 30, 1, 200, 2000, 30, 100};
  return b;
}

const PhaseCost& phase(const StepPrediction& p, size_t i) { return p.phases.at(i); }

}  // namespace

TEST_CASE("cost model: each phase is flops/rate + bytes/bandwidth + launches·overhead, by hand", "[bench]") {
  const GpuModel gpu = round_gpu();
  // 3 micro-batches of 2 × 8 = 16 tokens: 48 tokens a step.
  const StepPrediction p = rwkv::bench::predict_step(round_model(), round_block(), {2, 8, 3, false}, gpu);
  REQUIRE(p.phases.size() == 6);
  CHECK(p.tokens == 48);
  CHECK(p.model_flops == 3 * 1e6 * 48);
  // GEMMs: 1.44e8 FLOPs at 1e12/s; 3 micro × (2 layers × (7 + 14) + 3 head) = 135 launches.
  CHECK(phase(p, 0).flops == 1.44e8);
  CHECK(phase(p, 0).launches == 135);
  CHECK(phase(p, 0).seconds(gpu) == Approx(1.44e-4 + 135e-6).epsilon(1e-12));
  // Blocks' other kernels: 3 × 2 × ((100·16 + 1000) + (200·16 + 2000)) = 46800 B; 6 × 50 launches.
  CHECK(phase(p, 1).bytes == 46800);
  CHECK(phase(p, 1).launches == 300);
  CHECK(phase(p, 1).seconds(gpu) == Approx(46800e-9 + 300e-6).epsilon(1e-12));
  // WKV: 6 × ((10·16 + 50) + (30·16 + 100)) = 4740 B (4.74 µs) against the schedule's sequential
  // kernels (ctx 8 is below every chunk it tries): 3 micro × 2 layers × 3 walks × 2 waves (2·4
  // threads over 4 resident) × 8 steps × 1000 cycles at 1 GHz = 288 µs, the longer (their traffic
  // at 1 byte a cycle is at most 2048 cycles a walk); 12 launches.
  CHECK(phase(p, 2).bytes == 4740);
  CHECK(phase(p, 2).launches == 12);
  CHECK(phase(p, 2).seconds(gpu) == Approx(288e-6 + 12e-6).epsilon(1e-12));
  CHECK(p.wkv_chunk == 0);
  // Outside the blocks, fp32 (4 bytes an element): 3 × (16 × (14·4·4 + 3·4·10) + 4·10·4) = 16992 B;
  // 3 × 14 launches.
  CHECK(phase(p, 3).bytes == 16992);
  CHECK(phase(p, 3).launches == 42);
  // Update, fp32: 1000 × (12·2 + 40) = 64000 B; 10 tensors × 2 later micro-batches + 3 × 1 + 7 = 30
  // launches.
  CHECK(phase(p, 4).bytes == 64000);
  CHECK(phase(p, 4).launches == 30);
  CHECK(phase(p, 5).seconds(gpu) == Approx(5e-6).epsilon(1e-12));
  // Step: 279 + 346.8 + 300 + 58.992 + 94 + 5 µs.
  const double step = 1083.792e-6;
  CHECK(p.step_s == Approx(step).epsilon(1e-12));
  CHECK(p.tokens_per_s == Approx(48 / step).epsilon(1e-12));
  CHECK(p.mfu_vs_gemm == Approx(1.44e8 / step / 1e12).epsilon(1e-12));
  CHECK(p.mfu_vs_table == Approx(p.mfu_vs_gemm / 2).epsilon(1e-12));

  SECTION("activation checkpointing runs the blocks' forward twice, not the head's") {
    const StepPrediction c = rwkv::bench::predict_step(round_model(), round_block(), {2, 8, 3, true}, gpu);
    // + (1e6 − 2·4·10) FLOPs per token of the blocks' forward; 3 × (2 × (2·7 + 14) + 3) launches.
    CHECK(phase(c, 0).flops == 1.44e8 + (1e6 - 80) * 48);
    CHECK(phase(c, 0).launches == 177);
    // 3 × 2 × (2 × 2600 + 5200) bytes; WKV chain 4 walks instead of 3.
    CHECK(phase(c, 1).bytes == 62400);
    CHECK(phase(c, 2).seconds(gpu) == Approx(384e-6 + 18e-6).epsilon(1e-12));
    CHECK(c.model_flops == p.model_flops);  // MFU counts the model's FLOPs, not the recomputation
  }
  SECTION("bf16 parameters: 2-byte activations outside the blocks, fp32 sums and masters") {
    const StepPrediction b = rwkv::bench::predict_step(round_model(), round_block(), {2, 8, 3, false, true}, gpu);
    // 3 × (16 × (14·2·4 + 3·2·10) + 2·10·4) = 8496 B.
    CHECK(phase(b, 3).bytes == 8496);
    // 1000 × (6 first sum + 10 × 2 later + 40 + 6 master copy) = 72000 B; 10 × (3 + 1) + 3 + 7 launches.
    CHECK(phase(b, 4).bytes == 72000);
    CHECK(phase(b, 4).launches == 50);
    CHECK(phase(b, 0).flops == phase(p, 0).flops);  // the block's census comes in as given
  }
  SECTION("a WKV whose bytes outlast its chain is bound by them") {
    BlockTraffic heavy = round_block();
    heavy.forward.wkv_bytes_per_token = 1e4;  // 6 × (1e4·16 + 50 + 580) = 963780 B: 963.78 µs > 288
    const StepPrediction h = rwkv::bench::predict_step(round_model(), heavy, {2, 8, 3, false}, gpu);
    CHECK(phase(h, 2).bytes == 963780);
    CHECK(phase(h, 2).seconds(gpu) == Approx(963.78e-6 + 12e-6).epsilon(1e-12));
  }
}

TEST_CASE("cost model: a long context at a small batch runs the chunked WKV the CUDA op would choose", "[bench]") {
  GpuModel gpu = *rwkv::bench::known_gpu("h100");
  ModelFigures m = round_model();
  m.att = 768;
  const StepShape shape{1, 8192, 2, false, true};
  const StepPrediction p = rwkv::bench::predict_step(m, round_block(), shape, gpu);
  // The schedule's own choice with the bandwidth this GPU model gives it.
  rwkv::kernels::WkvGpu wkv = gpu.wkv;
  wkv.bytes_per_sm_cycle = gpu.bandwidth_gbs / (gpu.clock_ghz * static_cast<double>(wkv.sms));
  const rwkv::kernels::WkvShape s{1, 8192, 768, 2};
  REQUIRE(p.wkv_chunk == rwkv::kernels::wkv_choose_chunk(s, wkv));
  REQUIRE(p.wkv_chunk > 0);
  // 2 micro-batches × 2 layers of the chunked kernels' cycles at the clock (their time outlasts
  // round_block's few census bytes), well under what the sequential kernels would take.
  const auto seconds = [&](int64_t chunk) {
    const rwkv::kernels::WkvCycles c = rwkv::kernels::wkv_cycles(s, chunk, wkv);
    return 2 * 2 * (c.forward + c.backward) / (gpu.clock_ghz * 1e9);
  };
  const double launches_s = phase(p, 2).launches * gpu.launch_us * 1e-6;
  CHECK(phase(p, 2).seconds(gpu) == Approx(seconds(p.wkv_chunk) + launches_s).epsilon(1e-12));
  CHECK(seconds(p.wkv_chunk) * rwkv::kernels::kWkvChunkMargin < seconds(0));
}

TEST_CASE("cost model: the step's FLOPs are 3× the forward's products counted from the shapes", "[bench]") {
  rwkv::ModelConfig config;
  config.n_layer = 3;
  config.n_embd = 8;
  config.dim_att = 12;
  config.dim_ffn = 20;
  config.vocab_size = 50;
  const ModelFigures m = rwkv::bench::model_figures(config);
  // Per layer: key, value, receptance D→A; output A→D; ffn key D→F, value F→D, receptance D→D; the
  // head D→V once. 2 FLOPs per multiply-add.
  const double D = 8, A = 12, F = 20, V = 50, L = 3;
  const double forward = 2 * (L * (3 * D * A + A * D + D * F + F * D + D * D) + D * V);
  CHECK(m.forward_flops_per_token == forward);
  // Parameters (built on the meta device: counted, not allocated): embedding and head; per layer two
  // LayerNorms (4D), time_decay and time_first (2A), five mixes (5D), the seven matrices; ln0 and
  // ln_out (4D). Tensors: 18 per layer and 6 more.
  CHECK(m.parameters == 2 * V * D + L * (4 * D + 2 * A + 5 * D + 3 * D * A + A * D + D * F + F * D + D * D) + 4 * D);
  CHECK(m.parameter_tensors == 18 * 3 + 6);
  const StepPrediction p =
      rwkv::bench::predict_step(m, rwkv::bench::block_traffic(config, 4, 8, false), {2, 5, 1, false}, round_gpu());
  CHECK(phase(p, 0).flops == 3 * forward * 10);
}

TEST_CASE("cost model: the census fit per token + per call gives the census at a third size", "[bench]") {
  rwkv::ModelConfig config;
  config.n_layer = 2;
  config.n_embd = 16;
  config.vocab_size = 32;
  for (const bool bf16 : {false, true}) {
    INFO("bf16 " << bf16);
    const BlockTraffic fit = rwkv::bench::block_traffic(config, 16, 32, bf16);
    const rwkv::bench::BlockCensus at48 =
        rwkv::bench::census_block(config, 1, 48, bf16 ? torch::kBFloat16 : torch::kFloat32);
    const auto check_pass = [](const rwkv::bench::PassTraffic& f, const rwkv::bench::OpCensus& c) {
      int64_t wkv_bytes = 0, wkv_launches = 0;
      for (const auto& [op, t] : c.by_op)
        if (op.rfind("rwkv::wkv", 0) == 0) {
          wkv_bytes += t.bytes;
          wkv_launches += t.launches;
        }
      CHECK(wkv_launches == 1);
      CHECK(f.wkv_launches == 1);
      CHECK(f.gemm_launches == c.gemm().launches);
      CHECK(f.other_launches == c.other().launches - wkv_launches);
      CHECK(f.bytes_per_token * 48 + f.bytes_per_call == Approx(c.other().bytes - wkv_bytes).epsilon(1e-12));
      CHECK(f.wkv_bytes_per_token * 48 + f.wkv_bytes_per_call == Approx(wkv_bytes).epsilon(1e-12));
      CHECK(f.bytes_per_token > 0);
      CHECK(f.bytes_per_call > 0);  // weight gradients do not scale with tokens
    };
    check_pass(fit.forward, at48.forward);
    check_pass(fit.backward, at48.backward);
  }
}

TEST_CASE("bench predict: the JSON's step is its phases' sum at the flags' figures, FLOPs 6(13LD²+VD)", "[bench]") {
  rwkv::test::TempDir dir("rwkv-bench-predict");
  const int64_t L = 2, D = 32, V = 64;
  std::ofstream(dir / "tiny.yaml") << fmt::format("model:\n  n_layer: {}\n  n_embd: {}\n  vocab_size: {}\n", L, D, V);
  std::string out;
  const int rc = rwkv::test::run(
      fmt::format("{} bench predict {} --micro-batch 2 --ctx 16 --gpu h100 --peak-tflops 500 --bandwidth-gbs 2000 "
                  "--launch-us 3 --set train.grad_accum=2 --json {}",
                  rwkv::test::rwkv_binary().string(), (dir / "tiny.yaml").string(), (dir / "p.json").string()),
      &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("PREDICTED GPU training step, not measured"));
  std::ifstream in(dir / "p.json");
  const auto j = nlohmann::json::parse(in);
  CHECK(j.at("tokens").get<double>() == 2 * 2 * 16);
  CHECK(j.at("grad_accum") == 2);
  CHECK(j.at("dtype") == "bf16");
  const auto& gpu = j.at("gpu");
  CHECK(gpu.at("gemm_tflops") == 500);
  CHECK(gpu.at("bandwidth_gbs") == 2000);
  CHECK(gpu.at("launch_us") == 3);
  CHECK(gpu.at("table_tflops") == 989);  // the H100 SXM datasheet's dense bf16
  double sum_ms = 0;
  for (const auto& ph : j.at("phases")) {
    const double ms = (ph.at("flops").get<double>() / 500e12 + ph.at("bytes").get<double>() / 2000e9 +
                       ph.at("launches").get<double>() * 3e-6 + ph.at("latency_s").get<double>()) *
                      1e3;
    CHECK(ph.at("ms").get<double>() == Approx(ms).epsilon(1e-12));
    sum_ms += ms;
  }
  CHECK(j.at("step_ms").get<double>() == Approx(sum_ms).epsilon(1e-12));
  const double flops = 6.0 * (13 * L * D * D + V * D) * 64;
  CHECK(j.at("phases").at(0).at("flops").get<double>() == flops);
  CHECK(j.at("mfu_vs_gemm").get<double>() == Approx(flops / (sum_ms * 1e-3) / 500e12).epsilon(1e-12));
  // The census ran this build's block: seven Linear layers forward, two products each backward.
  CHECK(j.at("census").at("forward").at("gemm_launches") == 7);
  CHECK(j.at("census").at("backward").at("gemm_launches") == 14);
}

TEST_CASE("bench predict --wkv-chunk: the policy by default, the kernels forced otherwise, bad values named",
          "[bench]") {
  rwkv::test::TempDir dir("rwkv-bench-predict-chunk");
  std::ofstream(dir / "m.yaml") << "model:\n  n_layer: 1\n  n_embd: 64\n  vocab_size: 32\n";
  const auto predict = [&](const std::string& extra, std::string* out) {
    return rwkv::test::run(fmt::format("{} bench predict {} --micro-batch 1 --ctx 8192 --gpu h100 --json {} --force {}",
                                       rwkv::test::rwkv_binary().string(), (dir / "m.yaml").string(),
                                       (dir / "p.json").string(), extra),
                           out);
  };
  const auto wkv_ms = [&] {
    std::ifstream in(dir / "p.json");
    const auto j = nlohmann::json::parse(in);
    return std::make_pair(j.at("wkv_chunk").get<int64_t>(), j.at("phases").at(2).at("ms").get<double>());
  };
  std::string out;
  REQUIRE(predict("", &out) == 0);
  const auto [policy_chunk, policy_ms] = wkv_ms();
  CHECK(policy_chunk > 0);  // 64 channels walking 8192 steps
  CHECK_THAT(out, Catch::Contains("policy") && Catch::Contains(fmt::format("chunked, {} tokens", policy_chunk)));
  REQUIRE(predict("--wkv-chunk 0", &out) == 0);
  const auto [seq_chunk, seq_ms] = wkv_ms();
  CHECK(seq_chunk == 0);
  CHECK_THAT(out, Catch::Contains("sequential"));
  CHECK(policy_ms * rwkv::kernels::kWkvChunkMargin < seq_ms);
  REQUIRE(predict("--wkv-chunk auto", &out) == 0);
  CHECK(wkv_ms().first == policy_chunk);
  for (const char* bad : {"-3", "many"}) {
    INFO(bad);
    CHECK(predict(fmt::format("--wkv-chunk {}", bad), &out) != 0);
    CHECK_THAT(out, Catch::Contains("--wkv-chunk") && Catch::Contains(bad));
  }
}
