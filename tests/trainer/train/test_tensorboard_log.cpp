// [train] The run's TensorBoard scalars (trainer/train/tensorboard_log.h): the `tensorboard`
// package's event accumulator serves exactly the numbers of metrics.jsonl, also across a run that
// died between checkpoints and resumed; earlier starts' event files are kept aside like
// metrics.jsonl.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "trainer/config/yaml_section.h"
#include "trainer/train/train_loop.h"
#include "tests/support/test_tensorboard_read.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"

using namespace rwkv::trainer;
namespace tt = rwkv::test::trainer;
namespace fs = std::filesystem;

namespace {

using Series = std::map<std::string, std::vector<std::pair<int64_t, double>>>;

RunConfig config_of(const fs::path& run, const std::vector<std::string>& sets = {}) {
  std::vector<Override> o{parse_override("train.max_steps=8"), parse_override("checkpoint.every_steps=3")};
  for (const auto& s : sets) o.push_back(parse_override(s));
  return parse_run_config(tt::config_yaml(run.string()), "test.yaml", o);
}

// Trains `cfg`; with `die_at`, the start throws inside the step after `die_at` steps, as a killed
// process would stop: no checkpoint of its own, its records after the last checkpoint orphaned.
void train(const RunConfig& cfg, int64_t die_at = -1) {
  tt::OneThread one;
  auto env = tt::make_env(cfg);
  auto c = tt::quiet();
  c.after_backward = [die_at](const TrainProgress& p, const rwkv::NamedTensors&) {
    if (p.step == die_at) throw std::runtime_error("killed");
  };
  if (die_at < 0) {
    run_training(cfg, env, c);
  } else {
    CHECK_THROWS_WITH(run_training(cfg, env, c), "killed");
  }
}

// Every number of every metrics.jsonl record but its step, per field, as float (TensorBoard's
// simple_value) widened back to double.
Series metrics_series(const fs::path& file, std::vector<int64_t>* steps) {
  Series out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line);
    const int64_t step = record.at("step");
    steps->push_back(step);
    for (const auto& [key, value] : record.items())
      if (key != "step" && value.is_number()) out[key].emplace_back(step, static_cast<double>(value.get<float>()));
  }
  return out;
}

std::vector<fs::path> events_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("tensorboard serves every number of metrics.jsonl, also after a start that died and resumed",
          "[train][interop]") {
  rwkv::test::TempDir dir("rwkv-tb-run");
  const RunConfig cfg = config_of(dir / "run");
  train(cfg, 5);  // steps 1-5 logged, the checkpoint of step 3 the last
  train(cfg);     // resumes from step 3; logs 4-8 again
  std::vector<int64_t> steps;
  const Series want = metrics_series(dir / "run" / "metrics.jsonl", &steps);
  REQUIRE(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  REQUIRE(want.count("loss") == 1);
  CHECK(want.count("mfu") == 0);  // null: no peak known on this machine's config

  const auto seen = rwkv::test::tensorboard_read(dir / "run" / "tb");
  // One file per start, read in the order they were written: version, START, 5 scalar events each.
  REQUIRE(seen["records"].size() == 2);
  CHECK(seen["records"][0]["records"] == 7);
  CHECK(seen["records"][1]["records"] == 7);
  // Without the second start's SessionLog START the accumulator would also hold the dead start's
  // steps 4 and 5.
  const auto got = seen["scalars"].get<Series>();
  for (const auto& [tag, series] : want) {
    INFO(tag);
    CHECK(got.count(tag) == 1);
    if (got.count(tag)) CHECK(got.at(tag) == series);
  }
  CHECK(got.size() == want.size());
}

TEST_CASE("a fresh start keeps earlier event files in tb.N, a restart moves them into previous-N", "[train]") {
  rwkv::test::TempDir dir("rwkv-tb-rotate");
  const fs::path run = dir / "run";
  train(config_of(run, {"train.max_steps=1"}));
  const auto first = events_files(run / "tb");
  REQUIRE(first.size() == 1);
  const std::string first_bytes = rwkv::test::slurp(first[0]);
  fs::remove_all(run / "checkpoints");  // nothing to resume: a fresh start
  train(config_of(run, {"train.max_steps=1"}));
  CHECK(rwkv::test::slurp(run / "tb.1" / first[0].filename()) == first_bytes);
  const auto second = events_files(run / "tb");
  REQUIRE(second.size() == 1);
  train(config_of(run, {"train.max_steps=1", "checkpoint.resume=restart"}));
  CHECK(fs::exists(run / "previous-1" / "tb" / second[0].filename()));
  CHECK(events_files(run / "tb").size() == 1);

  fs::create_directories(dir / "other");
  std::ofstream(dir / "other" / "tb") << "not a folder";
  tt::OneThread one;
  const RunConfig bad = config_of(dir / "other");
  auto env = tt::make_env(bad);
  CHECK_THROWS_WITH(run_training(bad, env, tt::quiet()),
                    Catch::Contains((dir / "other" / "tb").string()) && Catch::Contains("is not a directory"));
}
