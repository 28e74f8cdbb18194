// [cli] The log of `rwkv train` (common/log/log.h, trainer/README.md "Logs") as the real binary
// writes it: the console and <run_dir>/train.log at log.level, with the messages from before the
// run directory was claimed at the head of the file; a resumed run appending; errors that keep
// their one `rwkv: error:` line on stderr and are copied into the file; rotation at
// log.file_max_mb. (Several ranks: tests/trainer/dist/test_dist_logs.cpp.)
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace {

std::string bin() { return rwkv::test::rwkv_binary().string(); }

// A byte-tokenized corpus at <dir>/tok and a tiny-model config writing to <dir>/run.
std::string prepare(const fs::path& dir) { return rwkv::test::write_tiny_run(dir, dir / "run", 1000, ", seed: 1"); }

// `rwkv train CONFIG ARGS` (stdout and stderr together); the exit status in *rc.
std::string train(const std::string& cfg, const std::string& args, int* rc) {
  std::string out;
  *rc = rwkv::test::run(fmt::format("{} train {} {}", bin(), cfg, args), &out);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// A log file line that starts a message: date, time with milliseconds, level word, the message.
const std::regex kFileLine(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (trace|debug|info|warning|error) +(.*))");

// The levels of the messages in `text` (a log file), in order; continuation lines of multi-line
// messages (the effective config) start with no timestamp and are skipped.
std::vector<std::string> levels(const std::string& text) {
  std::vector<std::string> out;
  std::smatch m;
  for (const auto& line : lines_of(text))
    if (std::regex_match(line, m, kFileLine)) out.push_back(m[1]);
  return out;
}

bool has_line(const std::string& text, const std::string& level, const std::string& message_start) {
  std::smatch m;
  for (const auto& line : lines_of(text))
    if (std::regex_match(line, m, kFileLine) && m[1] == level && m[2].str().rfind(message_start, 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("rwkv train: console and train.log at log.level, appended on resume; errors keep their text", "[cli]") {
  rwkv::test::TempDir dir("rwkv-logs");
  const std::string cfg = prepare(dir.path());
  const fs::path log = dir / "run" / "train.log";
  int rc = 0;

  // A bad level is a config error like any other: one line, the field and the choices; nothing written.
  const std::string bad = train(cfg, "--set log.level=loud", &rc);
  CHECK(rc == 2);
  CHECK(bad == "rwkv: error: " + cfg + ": log.level: expected one of trace|debug|info|warn|error, got 'loud'\n");
  CHECK_FALSE(fs::exists(dir / "run"));

  // debug: the console carries the time and the level word for all but info; the file begins with
  // what the console said before the run directory was claimed (the effective config).
  const std::string out = train(cfg, "--set train.max_steps=3 --set log.level=debug", &rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(std::regex_search(out, std::regex(R"((^|\n)\d\d:\d\d:\d\d effective config:\n)")));
  CHECK(std::regex_search(out, std::regex(R"(\n\d\d:\d\d:\d\d stage 0: ctx_len 16, )")));
  CHECK(std::regex_search(out, std::regex(R"(\n\d\d:\d\d:\d\d debug: step 3 took [0-9.]+ s on this rank \(loss )")));
  CHECK_THAT(out, !Catch::Contains("[rank"));  // one process: no rank tags
  const std::string first = rwkv::test::slurp(log);
  INFO(first);
  REQUIRE(!first.empty());
  CHECK(std::regex_match(lines_of(first).front(), std::regex(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} info    effective config:)")));
  CHECK(has_line(first, "info", "step       1 | stage 0"));
  CHECK(has_line(first, "debug", "step 2 took "));
  CHECK(has_line(first, "info", "reached max_steps at step 3; checkpoint "));
  CHECK_THAT(first, Catch::Contains("  ctx_len: 16\n"));  // the config's lines follow its first one
  for (const auto& l : levels(first)) CHECK((l == "info" || l == "debug"));

  // warn: no info line on the console or in the file; the config's warning reaches both.
  const std::string quiet = train(cfg, "--set train.max_steps=5 --set log.level=warn --set train.threads=100000", &rc);
  INFO(quiet);
  REQUIRE(rc == 0);
  CHECK(std::regex_search(quiet, std::regex(R"((^|\n)\d\d:\d\d:\d\d warning: .*train\.threads: 100000 is more than 4 threads)")));
  CHECK_THAT(quiet, !Catch::Contains("resumed from") && !Catch::Contains("| loss") && !Catch::Contains("effective config"));
  const std::string second = rwkv::test::slurp(log);
  REQUIRE(second.rfind(first, 0) == 0);  // appended
  const std::string added = second.substr(first.size());
  CHECK(levels(added) == std::vector<std::string>{"warning"});
  CHECK(has_line(added, "warning", cfg + ":3: train.threads: 100000 is more than 4 threads"));
  // ...while the run went on: its metrics show steps 4 and 5
  CHECK(rwkv::test::slurp(dir / "run" / "metrics.jsonl").find("\"step\":5") != std::string::npos);

  // An error once the file is open (a resume refused for a changed seed): the same one line on
  // stderr, and an error line in the file with the same text.
  const std::string refused = train(cfg, "--set train.seed=9", &rc);
  CHECK(rc == 2);
  INFO(refused);
  std::string error;  // the text after "rwkv: error: "
  for (const auto& line : lines_of(refused))
    if (line.rfind("rwkv: error: ", 0) == 0) error = line.substr(13);
  CHECK_THAT(error, Catch::StartsWith(cfg + ": cannot resume from ") && Catch::Contains("train.seed: 1 -> 9"));
  const std::string third = rwkv::test::slurp(log);
  REQUIRE(third.rfind(second, 0) == 0);
  const std::vector<std::string> refused_lines = lines_of(third.substr(second.size()));
  REQUIRE(!refused_lines.empty());
  std::smatch last;
  REQUIRE(std::regex_match(refused_lines.back(), last, kFileLine));
  CHECK(last[1] == "error");
  CHECK(last[2] == error);
}

TEST_CASE("rwkv train: train.log rotates at log.file_max_mb and keeps log.file_keep earlier files", "[cli]") {
  rwkv::test::TempDir dir("rwkv-log-rotation");
  const std::string cfg = prepare(dir.path());
  const fs::path run = dir / "run";
  int rc = 0;
  // 0.002 MiB = 2097 bytes; each step logs ~350 bytes (a debug line and a metrics line).
  const std::string out =
      train(cfg, "--set train.max_steps=24 --set log.level=debug --set log.file_max_mb=0.002 --set log.file_keep=2", &rc);
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(fs::exists(run / "train.log"));
  REQUIRE(fs::exists(run / "train.1.log"));
  REQUIRE(fs::exists(run / "train.2.log"));
  CHECK_FALSE(fs::exists(run / "train.3.log"));
  // Oldest to newest, the files hold the end of the run: consecutive steps, the last one at the end.
  std::vector<int64_t> steps;
  std::string newest;
  for (const char* name : {"train.2.log", "train.1.log", "train.log"}) {
    INFO(name);
    CHECK(fs::file_size(run / name) <= 2097);
    newest = rwkv::test::slurp(run / name);
    std::smatch m;
    for (const auto& line : lines_of(newest))
      if (std::regex_match(line, m, kFileLine) && m[2].str().rfind("step ", 0) == 0 && m[2].str().find(" took ") != std::string::npos)
        steps.push_back(std::stoll(m[2].str().substr(5)));
  }
  REQUIRE(steps.size() >= 3);
  for (size_t i = 1; i < steps.size(); ++i) CHECK(steps[i] == steps[i - 1] + 1);
  CHECK(steps.back() == 24);
  CHECK(steps.front() > 1);  // the oldest lines were dropped with the third file
  CHECK(has_line(newest, "info", "reached max_steps at step 24; checkpoint "));
}
