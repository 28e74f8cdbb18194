// What a run refuses to do to its run directory (trainer/train/run_directory.h): start over an
// earlier run's checkpoints, truncate its metrics, share the directory with another trainer,
// write before its paths are checked, checkpoint non-finite state, tear or lose metrics lines
// on a full disk.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/yaml_section.h"
#include "trainer/train/metrics.h"
#include "trainer/train/run_directory.h"
#include "trainer/train/train_loop.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"

using namespace rwkv::trainer;
namespace tt = rwkv::test::trainer;
namespace fs = std::filesystem;

namespace {

RunConfig config_of(const rwkv::test::TempDir& dir, const std::vector<std::string>& sets = {}) {
  std::vector<Override> o{parse_override("train.max_steps=4"), parse_override("checkpoint.every_steps=2")};
  for (const auto& s : sets) o.push_back(parse_override(s));
  return parse_run_config(tt::config_yaml((dir / "run").string()), "test.yaml", o);
}

TrainReport train(const RunConfig& cfg, std::vector<std::string>* warnings = nullptr) {
  tt::OneThread one;
  auto env = tt::make_env(cfg);
  auto c = tt::quiet();
  c.warn = [warnings](const std::string& w) {
    if (warnings) warnings->push_back(w);
  };
  return run_training(cfg, env, c);
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

void corrupt(const fs::path& file) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(100);
  f.put('\x5a');
}

}  // namespace

TEST_CASE("checkpoint.resume: never into a run directory with checkpoints is refused; restart archives them",
          "[train]") {
  rwkv::test::TempDir dir("rwkv-never");
  REQUIRE(train(config_of(dir)).progress.step == 4);
  const fs::path run = dir / "run", ck = run / "checkpoints";
  const auto metrics_before = lines_of(run / "metrics.jsonl");
  REQUIRE(metrics_before.size() == 4);
  const auto before = list_checkpoints(ck);
  REQUIRE(before.size() == 2);

  CHECK_THROWS_WITH(train(config_of(dir, {"checkpoint.resume=never"})),
                    Catch::Contains("checkpoint.resume is never") && Catch::Contains("--restart") &&
                        Catch::Contains("step-00000004"));
  CHECK(list_checkpoints(ck) == before);
  CHECK(lines_of(run / "metrics.jsonl") == metrics_before);

  const auto r = train(config_of(dir, {"checkpoint.resume=restart", "train.max_steps=2"}));
  CHECK_FALSE(r.resumed);
  CHECK(r.progress.step == 2);
  const fs::path archive = run / "previous-1";
  CHECK(fs::exists(archive / "checkpoints" / "step-00000002" / "COMPLETE"));
  CHECK(fs::exists(archive / "checkpoints" / "step-00000004" / "COMPLETE"));
  CHECK(lines_of(archive / "metrics.jsonl") == metrics_before);
  CHECK(lines_of(run / "metrics.jsonl").size() == 2);
  REQUIRE(list_checkpoints(ck).size() == 1);
  CHECK(list_checkpoints(ck).front().filename() == "step-00000002");
}

TEST_CASE("a resume whose every checkpoint is corrupt is refused and overwrites nothing", "[train]") {
  rwkv::test::TempDir dir("rwkv-all-corrupt");
  train(config_of(dir));
  const fs::path ck = dir / "run" / "checkpoints";
  for (const auto& p : list_checkpoints(ck)) corrupt(p / "shard-00000-of-00001.safetensors");
  const auto metrics_before = lines_of(dir / "run" / "metrics.jsonl");
  std::vector<std::string> warnings;
  CHECK_THROWS_WITH(train(config_of(dir), &warnings),
                    Catch::Contains("no checkpoint to resume from loads") && Catch::Contains("--restart"));
  CHECK(warnings.size() == 2);
  CHECK(list_checkpoints(ck).size() == 2);
  CHECK(lines_of(dir / "run" / "metrics.jsonl") == metrics_before);
}

TEST_CASE("a resume sets newer unreadable checkpoints aside; retention keeps checkpoints newer than its own",
          "[train]") {
  rwkv::test::TempDir dir("rwkv-set-aside");
  train(config_of(dir, {"checkpoint.keep=5"}));
  const fs::path ck = dir / "run" / "checkpoints";
  corrupt(ck / "step-00000004" / "shard-00000-of-00001.safetensors");
  std::vector<std::string> warnings;
  const auto r = train(config_of(dir, {"checkpoint.keep=1", "train.max_steps=3"}), &warnings);
  CHECK(r.resumed);
  CHECK(r.progress.step == 3);
  CHECK(fs::exists(ck / "unreadable-step-00000004" / "shard-00000-of-00001.safetensors"));  // kept: its weights may be intact
  REQUIRE(list_checkpoints(ck).size() == 1);
  CHECK(list_checkpoints(ck).front().filename() == "step-00000003");
  REQUIRE(warnings.size() == 2);
  CHECK_THAT(warnings[1], Catch::Contains("kept as") && Catch::Contains("unreadable-step-00000004"));

  // save_checkpoint alone: a newer step in the folder is not this run's to remove
  Checkpoint c;
  c.weights = {{"w", torch::ones({2})}};
  c.optimizer = {{"exp_avg.w", torch::zeros({2})}, {"exp_avg_sq.w", torch::zeros({2})}};
  capture_rng(c);
  rwkv::test::TempDir lone("rwkv-retention");
  for (int64_t step : {9, 1, 2}) {
    c.progress.step = step;
    save_checkpoint(lone.path(), c, 1);
  }
  std::vector<std::string> names;
  for (const auto& p : list_checkpoints(lone.path())) names.push_back(p.filename().string());
  CHECK(names == std::vector<std::string>{"step-00000002", "step-00000009"});
}

TEST_CASE("a fresh start keeps an earlier metrics.jsonl under another name", "[train]") {
  rwkv::test::TempDir dir("rwkv-rotate");
  fs::create_directories(dir / "run");
  std::ofstream(dir / "run" / "metrics.jsonl") << "{\"step\": 7, \"loss\": 1.0}\n";
  train(config_of(dir, {"train.max_steps=1"}));
  CHECK(lines_of(dir / "run" / "metrics.1.jsonl") == std::vector<std::string>{"{\"step\": 7, \"loss\": 1.0}"});
  CHECK(lines_of(dir / "run" / "metrics.jsonl").size() == 1);
}

TEST_CASE("a second trainer on a locked run directory is refused; the lock goes with its holder", "[train]") {
  rwkv::test::TempDir dir("rwkv-lock");
  const auto cfg = config_of(dir);
  {
    const RunDirectoryLock held(run_lock_dirs(cfg));
    CHECK_THROWS_WITH(RunDirectoryLock(run_lock_dirs(cfg)), Catch::Contains("another `rwkv train`") &&
                                                                 Catch::Contains(fmt::format("pid {}", ::getpid())));
    CHECK_THROWS_WITH(train(cfg), Catch::Contains("another `rwkv train`"));
    CHECK_FALSE(fs::exists(dir / "run" / "metrics.jsonl"));
  }
  CHECK(train(cfg).progress.step == 4);
  // checkpoint.dir outside the run directory is locked too
  const auto outside = config_of(dir, {"checkpoint.dir=" + (dir / "elsewhere").string()});
  REQUIRE(run_lock_dirs(outside).size() == 2);
  const RunDirectoryLock held(std::vector<fs::path>{dir / "elsewhere"});
  CHECK_THROWS_WITH(train(outside), Catch::Contains("elsewhere"));
}

TEST_CASE("run paths of the wrong kind are refused before anything is written", "[train]") {
  rwkv::test::TempDir dir("rwkv-paths");
  train(config_of(dir));
  const auto metrics_before = lines_of(dir / "run" / "metrics.jsonl");
  const std::string config_before = rwkv::test::slurp(dir / "run" / "config.yaml");
  std::ofstream(dir / "a-file") << "x";
  CHECK_THROWS_WITH(train(config_of(dir, {"checkpoint.dir=" + (dir / "a-file").string()})),
                    Catch::Contains("checkpoint.dir: '" + (dir / "a-file").string() + "' exists and is not a directory"));
  CHECK(lines_of(dir / "run" / "metrics.jsonl") == metrics_before);
  CHECK(rwkv::test::slurp(dir / "run" / "config.yaml") == config_before);
  rwkv::test::TempDir dir2("rwkv-paths-file");
  std::ofstream(dir2 / "run") << "x";
  CHECK_THROWS_AS(train(config_of(dir2)), rwkv::ConfigError);
  CHECK(rwkv::test::slurp(dir2 / "run") == "x");
}

TEST_CASE("state that turned non-finite is never checkpointed", "[train]") {
  rwkv::test::TempDir dir("rwkv-nan-state");
  const auto cfg = config_of(dir, {"train.max_steps=6"});
  tt::OneThread one;
  auto env = tt::make_env(cfg);
  auto c = tt::quiet();
  c.warn = [](const std::string&) {};
  c.after_backward = [](const TrainProgress& p, const rwkv::NamedTensors& params) {
    torch::NoGradGuard no_grad;
    if (p.step == 2) params.front().tensor.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  };
  CHECK_THROWS_WITH(run_training(cfg, env, c),
                    Catch::Contains("step 4: not checkpointed") && Catch::Contains("step-00000002"));
  const auto kept = list_checkpoints(dir / "run" / "checkpoints");
  REQUIRE(kept.size() == 1);
  for (const auto& [name, t] : load_checkpoint(kept.front()).weights) CHECK(torch::isfinite(t).all().item<bool>());
}

TEST_CASE("metrics.jsonl on a full disk: each failure reported, no torn line, every record once space returns",
          "[train]") {
  rwkv::test::TempDir dir("rwkv-full-disk");
  const fs::path file = dir / "metrics.jsonl";
  // A child process whose file size limit plays the full disk (RLIMIT_FSIZE: writes past it fail
  // with EFBIG), then raises it again (space returns). It reports through its exit status.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    int warnings = 0;
    {
      MetricsLog log(file, 0, [&](const std::string& w) {
        if (w.find(file.string()) != std::string::npos && w.find("File too large") != std::string::npos) ++warnings;
      });
      rlimit lim{};
      ::getrlimit(RLIMIT_FSIZE, &lim);
      const rlim_t unlimited = lim.rlim_cur;
      MetricsRow row;
      for (int64_t s = 1; s <= 3; ++s) log.append((row.step = s, row));
      lim.rlim_cur = fs::file_size(file) + 40;  // less than one more record
      ::setrlimit(RLIMIT_FSIZE, &lim);
      for (int64_t s = 4; s <= 6; ++s) log.append((row.step = s, row));
      if (log.waiting() != 3) ::_exit(10);
      lim.rlim_cur = unlimited;
      ::setrlimit(RLIMIT_FSIZE, &lim);
      log.append((row.step = 7, row));
      if (log.waiting() != 0) ::_exit(11);
    }
    ::_exit(warnings == 3 ? 0 : 12);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::vector<int64_t> steps;
  for (const auto& line : lines_of(file)) steps.push_back(nlohmann::json::parse(line).at("step").get<int64_t>());
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7});
}
