// The up-front memory check (trainer/train/memory_check.h): the need it computes against an
// independent count (the built model's parameters, bytes per parameter of fp32 Adam training),
// the stage it picks, and the refusal at the boundary of the available memory.
#include <catch2/catch.hpp>

#include "rwkv/model.h"
#include "trainer/config/run_config.h"
#include "trainer/config/yaml_section.h"
#include "trainer/train/memory_check.h"

using namespace rwkv::trainer;

namespace {

RunConfig config(const std::string& extra_train = "") {
  return parse_run_config(R"(model:
  n_layer: 3
  n_embd: 32
  vocab_size: 256
data:
  path: corpus
  ctx_len: 16
train:
  run_dir: runs/t
  micro_batch: 4
  epoch_samples: 64
  device: cpu
)" + extra_train + R"(optimizer:
  lr_init: 1.0e-3
stages:
  - {ctx_len: 16, steps: 2}
  - {ctx_len: 64, steps: 2}
  - {ctx_len: 32, steps: 2}
)",
                          "mem.yaml");
}

}  // namespace

TEST_CASE("a run's memory need: fp32 state from the built model's parameters, the largest stage", "[train]") {
  const RunConfig cfg = config();
  const rwkv::RWKV model(cfg.model, torch::TensorOptions().dtype(torch::kFloat32));
  const double P = static_cast<double>(rwkv::parameter_count(*model));
  const RunMemoryNeed need = run_memory_need(cfg, torch::kCPU, 1);
  // fp32 on CPU, one rank: the weights are the master (4 B), fp32 gradients (4 B), two Adam moments (8 B).
  CHECK(need.weights == 4 * P);
  CHECK(need.grads == 4 * P);
  CHECK(need.master == 0);
  CHECK(need.adam == 8 * P);
  CHECK(need.stage == 1);  // ctx 64: the most activations
  CHECK(need.activations > 0);
  CHECK(need.bytes == Approx(need.weights + need.grads + need.adam + need.activations));
  // ZeRO-2 over 4 ranks shards gradients and Adam: 4P + (4P + 8P) / 4 of state per rank.
  const RunMemoryNeed sharded = run_memory_need(config("  zero_stage: 2\n"), torch::kCPU, 4);
  CHECK(sharded.weights + sharded.grads + sharded.adam == Approx(4 * P + 3 * P));
}

TEST_CASE("a run that does not fit is refused naming the file, the shape and the stage", "[train]") {
  const RunConfig cfg = config();
  const double need = run_memory_need(cfg, torch::kCPU, 1).bytes;
  CHECK_NOTHROW(check_run_fits(cfg, torch::kCPU, 1, 1, AvailableMemory{need * 1.001, "test"}));
  CHECK_NOTHROW(check_run_fits(cfg, torch::kCPU, 1, 1, std::nullopt));  // unknown: not refused
  try {
    check_run_fits(cfg, torch::kCPU, 1, 1, AvailableMemory{need * 0.999, "a test's figure"});
    FAIL("not refused");
  } catch (const rwkv::ConfigError& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::StartsWith("mem.yaml: the run does not fit in memory"));
    CHECK_THAT(what, Catch::Contains("model.n_layer 3, model.n_embd 32, model.vocab_size 256"));
    CHECK_THAT(what, Catch::Contains("train.micro_batch 4 × ctx_len 64 (stage 1)"));
    CHECK_THAT(what, Catch::Contains("(a test's figure)"));
  }
  // Two ranks sharing this host's memory need twice one rank's.
  CHECK_THROWS_AS(check_run_fits(cfg, torch::kCPU, 2, 2, AvailableMemory{need * 1.5, "test"}), rwkv::ConfigError);
}

TEST_CASE("this host's available memory is read", "[train]") {
  const auto host = host_available_memory();
  REQUIRE(host.has_value());  // Linux: /proc/meminfo
  CHECK(host->bytes > 0);
  CHECK_FALSE(device_available_memory(torch::kCPU).has_value());
}
