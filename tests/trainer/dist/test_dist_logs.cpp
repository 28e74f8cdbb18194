// [dist] The logs of a run on two CPU ranks (torchrun, Gloo; trainer/README.md "Logs"): each rank
// writes its own file, rank 0 <run_dir>/train.log and rank 1 <run_dir>/logs/rank-1.log, every line
// tagged with its rank, at log.level; the console hears rank 0 unless log.console says all.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace {

// A byte-level corpus and a tiny-model config: global batch 4 as 2 samples x 2 micro-batches,
// one micro-batch per rank on 2 ranks.
std::string prepare(const fs::path& dir) {
  std::string text;
  for (int i = 0; i < 600; ++i) text += fmt::format("pack my box with {} dozen liquor jugs; {}\n", i % 23, i % 7);
  rwkv::test::prep_byte_corpus(dir, text);
  std::ofstream(dir / "run.yaml") << fmt::format(R"(model: {{n_layer: 1, n_embd: 32, vocab_size: 256}}
data: {{path: "{}", ctx_len: 16}}
train: {{run_dir: "{}", micro_batch: 2, grad_accum: 2, epoch_samples: 48, epoch_count: 100, device: cpu, threads: 1,
        dist_timeout_s: 20}}
optimizer: {{lr_init: 1.0e-3}}
checkpoint: {{every_steps: 1000}}
log: {{every_steps: 1}}
sample: {{length: 0}}
)",
                                                 (dir / "tok").string(), (dir / "run").string());
  return (dir / "run.yaml").string();
}

std::string torchrun(const std::string& cfg, const std::string& sets) {
  std::string out;
  const int rc = rwkv::test::run(
      fmt::format("OMP_NUM_THREADS=1 {} --standalone --no-python --nproc-per-node 2 {} train {} {}",
                  (rwkv::test::source_dir() / ".venv/bin/torchrun").string(), rwkv::test::rwkv_binary().string(), cfg,
                  sets),
      &out);
  INFO(out);
  REQUIRE(rc == 0);
  return out;
}

// rank → level → the messages of `text` (a log file) at that level; lines that start no message
// (the effective config's) are skipped.
using Messages = std::map<int, std::map<std::string, std::vector<std::string>>>;
Messages messages(const std::string& text) {
  static const std::regex line_re(
      R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[rank (\d+)\] (trace|debug|info|warning|error) +(.*))");
  Messages out;
  std::istringstream in(text);
  std::smatch m;
  for (std::string line; std::getline(in, line);)
    if (std::regex_match(line, m, line_re)) out[std::stoi(m[1])][m[2]].push_back(m[3]);
  return out;
}

std::set<std::string> levels(const std::map<std::string, std::vector<std::string>>& by_level) {
  std::set<std::string> out;
  for (const auto& [level, lines] : by_level) out.insert(level);
  return out;
}

bool any_starts(const std::vector<std::string>& lines, const std::string& start) {
  for (const auto& l : lines)
    if (l.rfind(start, 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("2 ranks: a log file per rank with its rank tag at log.level; the console hears rank 0", "[dist]") {
  rwkv::test::TempDir dir("rwkv-dist-logs");
  const std::string cfg = prepare(dir.path());
  const fs::path run = dir / "run";

  const std::string out = torchrun(cfg, "--set train.max_steps=2 --set log.level=trace");
  INFO(out);
  CHECK(std::regex_search(out, std::regex(R"(\n\d\d:\d\d:\d\d \[rank 0\] stage 0: ctx_len 16, )")));
  CHECK(std::regex_search(out, std::regex(R"(\n\d\d:\d\d:\d\d \[rank 0\] trace: step 1 micro-batch 0: samples )")));
  CHECK_THAT(out, !Catch::Contains("[rank 1]"));

  // Exactly these two files, one per rank.
  std::set<std::string> logs;
  for (const auto& e : fs::recursive_directory_iterator(run))
    if (e.path().extension() == ".log") logs.insert(fs::relative(e.path(), run).string());
  CHECK(logs == std::set<std::string>{"train.log", "logs/rank-1.log"});

  const Messages zero = messages(rwkv::test::slurp(run / "train.log"));
  const Messages one = messages(rwkv::test::slurp(run / "logs" / "rank-1.log"));
  REQUIRE(zero.size() == 1);  // rank 0's lines only
  REQUIRE(one.size() == 1);
  REQUIRE(zero.count(0));
  REQUIRE(one.count(1));
  const auto& r0 = zero.at(0);
  const auto& r1 = one.at(1);
  // No warnings in this run: the levels from trace to info, each with its messages.
  CHECK(levels(r0) == std::set<std::string>{"trace", "debug", "info"});
  CHECK(levels(r1) == std::set<std::string>{"trace", "debug", "info"});
  // Rank 0 speaks for the run: the config, the ranks and the metrics lines.
  CHECK(any_starts(r0.at("info"), "effective config:"));
  CHECK(any_starts(r0.at("info"), "ranks: 2 (torchrun, Gloo)"));
  CHECK(any_starts(r0.at("info"), "step       2 | stage 0"));
  // Every rank tells its own story: the stage, each step's time, its samples, the end.
  for (const auto* r : {&r0, &r1}) {
    const int rank = r == &r0 ? 0 : 1;
    INFO("rank " << rank);
    CHECK(any_starts(r->at("info"), "stage 0: ctx_len 16, global batch 4 (2 x 2), "));
    CHECK(any_starts(r->at("info"), "reached max_steps at step 2; checkpoint "));
    CHECK(any_starts(r->at("debug"), fmt::format("rank {} of 2 (local rank {}) on cpu", rank, rank)));
    CHECK(any_starts(r->at("debug"), "step 1 took "));
    CHECK(any_starts(r->at("debug"), "step 2 took "));
    CHECK(r->at("trace").size() == 2);  // one micro-batch per rank per step
    CHECK(any_starts(r->at("trace"), "step 1 micro-batch 0: samples "));
  }
  CHECK_FALSE(any_starts(r1.at("info"), "step       2 |"));  // metrics are rank 0's alone
  // The two ranks read different samples of the same step.
  CHECK(r0.at("trace").front() != r1.at("trace").front());

  // log.console: all (on a resume, which appends): rank 1's lines on the console too; its file continues.
  const std::string both = torchrun(cfg, "--set train.max_steps=3 --set log.console=all");
  INFO(both);
  CHECK(std::regex_search(both, std::regex(R"(\d\d:\d\d:\d\d \[rank 1\] resumed from )")));
  CHECK(std::regex_search(both, std::regex(R"(\d\d:\d\d:\d\d \[rank 0\] resumed from )")));
  const Messages one_more = messages(rwkv::test::slurp(run / "logs" / "rank-1.log"));
  CHECK(any_starts(one_more.at(1).at("info"), "reached max_steps at step 3; checkpoint "));
  CHECK(one_more.at(1).at("trace").size() == 2);  // info now: no trace lines added
}
