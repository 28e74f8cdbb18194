// `rwkv train` as a real subprocess: a SIGTERM'd run checkpoints its last complete step, exits 0,
// and `--resume` continues from there; a bad config exits non-zero naming file:line and field;
// `log.peak_tflops: auto` logs MFU against a peak measured at startup.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "trainer/checkpoint/checkpoint.h"
#include "tests/support/test_util.h"

namespace {

// A small byte-tokenized corpus (binidx via `rwkv prep`) and a tiny-model config over it.
std::string prepare_run(const rwkv::test::TempDir& dir) {
  std::filesystem::create_directories(dir / "text");
  std::ofstream text(dir / "text" / "a.txt");
  for (int i = 0; i < 800; ++i) text << "the quick brown fox " << i % 17 << " jumps over the lazy dog.\n";
  text.close();
  std::string out;
  const auto prep = fmt::format("{} prep {} -o {} --tokenizer byte --quiet", rwkv::test::rwkv_binary().string(),
                                (dir / "text").string(), (dir / "tok").string());
  REQUIRE(rwkv::test::run(prep, &out) == 0);
  std::ofstream cfg(dir / "run.yaml");
  cfg << fmt::format(R"(model: {{n_layer: 1, n_embd: 32, vocab_size: 256}}
data: {{path: "{}", ctx_len: 16}}
train: {{run_dir: "{}", micro_batch: 4, epoch_samples: 40, epoch_count: 1000, device: cpu, threads: 1}}
optimizer: {{lr_init: 1.0e-3}}
checkpoint: {{every_steps: 1000}}
log: {{every_steps: 1}}
)",
                     (dir / "tok").string(), (dir / "run").string());
  return (dir / "run.yaml").string();
}

}  // namespace

TEST_CASE("a SIGTERM'd `rwkv train` checkpoints, exits cleanly and resumes", "[cli]") {
  rwkv::test::TempDir dir("rwkv-sigterm");
  const std::string cfg = prepare_run(dir);
  const std::string bin = rwkv::test::rwkv_binary().string();
  const std::string metrics = (dir / "run" / "metrics.jsonl").string();
  const std::string script = fmt::format(
      "{0} train {1} > {2}/log1 2>&1 & pid=$!; "
      "for i in $(seq 1200); do [ -f {3} ] && [ $(wc -l < {3}) -ge 3 ] && break; sleep 0.05; done; "
      "kill -TERM $pid; wait $pid; echo \"exit=$?\"; cat {2}/log1",
      bin, cfg, dir.path().string(), metrics);
  std::string out;
  rwkv::test::run("bash -c '" + script + "'", &out);
  INFO(out);
  REQUIRE_THAT(out, Catch::Contains("exit=0") && Catch::Contains("stopped at step"));
  const auto ckpts = rwkv::trainer::list_checkpoints(dir / "run" / "checkpoints");
  REQUIRE(ckpts.size() == 1);
  const int64_t stopped = rwkv::trainer::load_checkpoint(ckpts.back()).progress.step;
  CHECK(stopped >= 3);

  std::string out2;
  const auto resume = fmt::format("{} train {} --resume --set train.max_steps={}", bin, cfg, stopped + 2);
  REQUIRE(rwkv::test::run(resume, &out2) == 0);
  INFO(out2);
  CHECK_THAT(out2, Catch::Contains(fmt::format("resumed from {}", ckpts.back().string())));
  CHECK_THAT(out2, Catch::Contains(fmt::format("reached max_steps at step {}", stopped + 2)));
}

TEST_CASE("`rwkv train` with a bad config exits non-zero with file:line and the field", "[cli]") {
  rwkv::test::TempDir dir("rwkv-badcfg");
  const std::string cfg = prepare_run(dir);
  std::string out;
  const int rc = rwkv::test::run(fmt::format("{} train {} --set train.micro_batch=0", rwkv::test::rwkv_binary().string(), cfg), &out);
  CHECK(rc != 0);
  CHECK_THAT(out, Catch::Contains("run.yaml:3: train.micro_batch: expected a positive integer"));
  CHECK_FALSE(std::filesystem::exists(dir / "run"));  // nothing written
}

TEST_CASE("`rwkv train` with log.peak_tflops: auto measures a peak, logs MFU and keeps `auto`", "[cli]") {
  rwkv::test::TempDir dir("rwkv-peak-auto");
  const std::string cfg = prepare_run(dir);
  std::string out;
  const int rc = rwkv::test::run(fmt::format("{} train {} --set log.peak_tflops=auto --set train.max_steps=2",
                                             rwkv::test::rwkv_binary().string(), cfg),
                                 &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("MFU peak (log.peak_tflops: auto): ") && Catch::Contains("measured: the model's GEMMs"));
  std::ifstream metrics(dir / "run" / "metrics.jsonl");
  int rows = 0;
  for (std::string line; std::getline(metrics, line); ++rows) {
    const auto j = nlohmann::json::parse(line);
    REQUIRE(j.at("mfu").is_number());
    CHECK(j.at("mfu").get<double>() > 0);
  }
  CHECK(rows == 2);
  std::ifstream saved(dir / "run" / "config.yaml");
  const std::string yaml((std::istreambuf_iterator<char>(saved)), std::istreambuf_iterator<char>());
  CHECK_THAT(yaml, Catch::Contains("peak_tflops: auto"));
}
