// The MFU peak: `log.peak_tflops` accepts a number or `auto` (and nothing else, with file:line),
// the GEMM shapes account for exactly the model's counted FLOPs, the device table, and the GEMM
// measurement returning a usable rate (no timing is asserted).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "rwkv/model.h"
#include "trainer/config/yaml_section.h"
#include "trainer/bench/flops_peak.h"
#include "trainer/config/run_config.h"

using namespace rwkv::trainer;

namespace {

const std::string kRun = R"(model:
  n_layer: 2
  n_embd: 64
  vocab_size: 256
data:
  path: corpus
  ctx_len: 128
train:
  run_dir: runs/t
  micro_batch: 8
  epoch_count: 10
optimizer:
  lr_init: 6.0e-4
  lr_final: 1.0e-5
  warmup_steps: 50
log:
  peak_tflops: )";

std::string error_of(const std::string& value) {
  try {
    parse_run_config(kRun + value + "\n", "cfg.yaml");
  } catch (const rwkv::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("log.peak_tflops: a number, auto, or an error naming file:line", "[bench]") {
  const RunConfig number = parse_run_config(kRun + "989\n", "cfg.yaml");
  CHECK(number.log.peak_tflops == 989);
  CHECK_FALSE(number.log.peak_auto);

  const RunConfig automatic = parse_run_config(kRun + "auto\n", "cfg.yaml");
  CHECK(automatic.log.peak_auto);
  // The effective config keeps `auto` (a resumed run measures again) and reads back the same.
  CHECK(automatic.to_yaml().find("peak_tflops: auto") != std::string::npos);
  CHECK(parse_run_config(automatic.to_yaml(), "saved.yaml").log.peak_auto);
  CHECK(unsafe_resume_change(number, automatic).empty());  // what is printed never blocks a resume

  CHECK_FALSE(parse_run_config(kRun + "0\n", "cfg.yaml").log.peak_auto);
  for (const char* bad : {"fast", "-1", "Auto", "[1, 2]"}) {
    INFO(bad);
    CHECK_THAT(error_of(bad), Catch::Contains("cfg.yaml:17: log.peak_tflops") && Catch::Contains("or auto"));
  }
}

TEST_CASE("GEMM shapes: three products per weight are the training step's 6(13LD² + VD) FLOPs", "[bench]") {
  for (const rwkv::ModelConfig c : {rwkv::ModelConfig{2, 64, 256}, rwkv::ModelConfig{12, 768, 50277},
                                    rwkv::ModelConfig{3, 96, 300, 64, 200}}) {
    // Independent count: 2 × the elements of every 2-D weight but the embedding (rwkv/model.h).
    rwkv::RWKV model(c, torch::TensorOptions().device(torch::kMeta));
    double gemm_flops_per_token = 0;
    for (const GemmShape& s : model_gemm_shapes(c)) gemm_flops_per_token += 2.0 * 3.0 * s.in * s.out * s.count;
    CHECK(gemm_flops_per_token == 3.0 * static_cast<double>(rwkv::forward_flops_per_token(*model)));
  }
}

TEST_CASE("peak table: dense bf16 figures by device name, specific names first", "[bench]") {
  CHECK(known_bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989);
  CHECK(known_bf16_peak_tflops("NVIDIA H100 PCIe") == 756);
  CHECK(known_bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312);
  // Whole-word matches only: the L40 is not an L4, the H200 NVL not an H200 SXM, a GH200 not an H200.
  CHECK(known_bf16_peak_tflops("NVIDIA L40") == 181);
  CHECK(known_bf16_peak_tflops("NVIDIA L4") == 121);
  CHECK(known_bf16_peak_tflops("NVIDIA H200 NVL") == 835);
  CHECK(known_bf16_peak_tflops("NVIDIA H200") == 989);
  CHECK(known_bf16_peak_tflops("NVIDIA GH200 480GB") == 989);
  CHECK_FALSE(known_bf16_peak_tflops("NVIDIA A10G").has_value());
  CHECK(known_bf16_peak_tflops("NVIDIA L40S") == 362);
  CHECK_FALSE(known_bf16_peak_tflops("Some Future Accelerator").has_value());
  CHECK_FALSE(known_bf16_peak_tflops("").has_value());
}

TEST_CASE("GEMM rate: the measurement of a tiny model's products is positive and finite", "[bench]") {
  const rwkv::ModelConfig c{2, 32, 64};
  const GemmRate r = measure_gemm_rate(c, 16, torch::TensorOptions().dtype(torch::kFloat32), 3, 1);
  CHECK(r.runs == 3);
  CHECK(std::isfinite(r.median_tflops));
  CHECK(r.min_tflops > 0);
  CHECK(r.min_tflops <= r.median_tflops);
  CHECK(r.median_tflops <= r.max_tflops);
  const PeakEstimate p = auto_peak(c, 16, torch::Device(torch::kCPU));
  CHECK(p.tflops > 0);
  CHECK(std::isfinite(p.tflops));
  CHECK_THAT(p.source, Catch::StartsWith("measured:"));
}

TEST_CASE("copy bandwidth: the measurement is positive, finite and ordered", "[bench]") {
  const rwkv::trainer::Bandwidth b = rwkv::trainer::measure_copy_bandwidth(1 << 20, torch::Device(torch::kCPU), 3, 1);
  CHECK(b.runs == 3);
  CHECK(std::isfinite(b.max_gbs));
  CHECK(b.min_gbs > 0);
  CHECK(b.min_gbs <= b.median_gbs);
  CHECK(b.median_gbs <= b.max_gbs);
  CHECK_THROWS(rwkv::trainer::measure_copy_bandwidth(0, torch::Device(torch::kCPU)));
}
