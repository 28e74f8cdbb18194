// The six size configs (configs/rwkv4-*.yaml) as complete runs of the paper's recipe: they load
// through the run-config validator without their data present, stage 0 is one Pile epoch on the
// Table 3 schedule, stages 1-3 are the §5.2 context extension with its token budgets, and
// `rwkv info` still reads them. A missing data file is reported when training starts.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "tests/support/test_util.h"
#include "trainer/config/run_config.h"

using namespace rwkv::trainer;
namespace fs = std::filesystem;

namespace {

struct PaperSize {
  const char* tag;
  int64_t n_layer, n_embd;
  double lr_init;
  int64_t constant_epochs;  // E_c
  double lr_final;
};

// Paper Table 2 (shapes) and Table 3 (learning rates), as trainer/README.md "Optimizer and schedule" lists them.
const PaperSize kSizes[] = {
    {"169m", 12, 768, 6e-4, 361, 1e-5},   {"430m", 24, 1024, 4e-4, 411, 1e-5},
    {"1b5", 24, 2048, 3e-4, 443, 1e-5},   {"3b", 32, 2560, 1.5e-4, 451, 1e-5},
    {"7b", 32, 4096, 1.5e-4, 465, 1e-5},  {"14b", 40, 5120, 1e-4, 544, 7e-6},
};

fs::path config_path(const PaperSize& s) {
  return rwkv::test::source_dir() / "configs" / fmt::format("rwkv4-{}.yaml", s.tag);
}

}  // namespace

TEST_CASE("size configs: Table 3 schedule, then 1024 -> 2048 (10B) -> 4096 (100B) -> 8192 (100B)", "[config]") {
  for (const auto& size : kSizes) {
    const fs::path file = config_path(size);
    INFO(file.string());
    // The data is not in the repository: loading must not need it.
    const RunConfig c = load_run_config(file.string());
    CHECK_FALSE(fs::exists(rwkv::test::source_dir() / c.data.path));
    CHECK(c.model.n_layer == size.n_layer);
    CHECK(c.model.n_embd == size.n_embd);
    CHECK(c.model.vocab_size == 50277);
    CHECK(c.data.sampler == SamplerKind::magic_prime);
    CHECK(c.train.precision == Precision::bf16);
    CHECK(c.train.device == DeviceKind::cuda);
    // Only 14B needs its activations recomputed to fit 80 GB GPUs (rwkv plan).
    CHECK(c.train.activation_checkpointing == (std::string(size.tag) == "14b"));
    CHECK(c.train.epoch_samples == 40320);
    CHECK(c.optimizer.beta1 == 0.9);
    CHECK(c.optimizer.beta2 == 0.99);
    CHECK(c.optimizer.eps == 1e-8);
    CHECK(c.optimizer.grad_clip == 1.0);

    REQUIRE(c.stages.size() == 4);
    const Stage& s0 = c.stages[0];
    CHECK(s0.ctx_len == 1024);
    CHECK(s0.lr_init == size.lr_init);
    CHECK(s0.lr_final == size.lr_final);
    CHECK(s0.steps == 8043 * c.steps_per_epoch(s0));                 // one Pile epoch
    CHECK(s0.constant_steps == size.constant_epochs * c.steps_per_epoch(s0));
    CHECK(s0.lr_mult.at("time_decay") == 2.0);
    CHECK(s0.lr_mult.at("time_first") == 3.0);
    // 128 sequences per step (global batch = micro x accum on any number of ranks),
    // spread over 8 GPUs: 8 divides every stage's grad_accum.
    CHECK(s0.global_batch() == 128);
    CHECK(s0.grad_accum % 8 == 0);

    const int64_t ctx[] = {2048, 4096, 8192};
    const double tokens[] = {10e9, 100e9, 100e9};
    for (size_t i = 1; i < 4; ++i) {
      const Stage& s = c.stages[i];
      INFO("stage " << i);
      CHECK(s.ctx_len == ctx[i - 1]);
      const double per_step = static_cast<double>(s.global_batch() * s.ctx_len);
      CHECK(per_step == static_cast<double>(s0.global_batch() * s0.ctx_len));  // tokens per step kept
      CHECK(static_cast<double>(s.steps) * per_step >= tokens[i - 1]);
      CHECK(static_cast<double>(s.steps - 1) * per_step < tokens[i - 1]);
      CHECK(s.lr_init == size.lr_final);  // constant at the schedule's end
      CHECK(s.lr_final == size.lr_final);
      CHECK(s.lr_mult.at("time_*") == 5.0);
      CHECK(40320 % s.global_batch() == 0);
      CHECK(s.grad_accum % 8 == 0);
    }
    // The effective config reads back the same (it is what a run directory and checkpoints keep).
    CHECK(parse_run_config(c.to_yaml(), "effective.yaml").to_yaml() == c.to_yaml());
  }
}

TEST_CASE("size configs: `rwkv info` reads them; a missing data file stops `rwkv train` at start", "[config]") {
  const std::string bin = rwkv::test::rwkv_binary().string();
  for (const auto& size : kSizes) {
    std::string out;
    INFO(config_path(size).string());
    REQUIRE(rwkv::test::run(bin + " info " + config_path(size).string(), &out) == 0);
    CHECK_THAT(out, Catch::Contains(fmt::format("n_layer L = {}, n_embd D = {}", size.n_layer, size.n_embd)));
  }
  rwkv::test::TempDir dir("rwkv-size-config");
  const std::string missing = (dir / "no-such-pile").string();
  const std::string cmd = fmt::format(
      "{} train {} --set train.device=cpu --set train.precision=fp32 --set data.path={} --set train.run_dir={}", bin,
      config_path(kSizes[0]).string(), missing, (dir / "run").string());
  std::string out;
  CHECK(rwkv::test::run(cmd, &out) != 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains(missing));
  CHECK_FALSE(fs::exists(dir / "run"));  // nothing written before the data is there
}
