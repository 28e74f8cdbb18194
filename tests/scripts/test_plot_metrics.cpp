// scripts/plot_metrics.py on two runs' metrics.jsonl: it tells training from validation records
// (the keys of trainer/train/metrics.h), draws them into one PNG, and refuses input without records.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <fstream>

#include "tests/support/test_util.h"
#include "trainer/train/metrics.h"

namespace fs = std::filesystem;
using namespace rwkv::trainer;

TEST_CASE("plot_metrics.py draws training and validation loss of several runs into one picture", "[scripts]") {
  rwkv::test::TempDir dir("rwkv-plot");
  // Records as the trainer writes them: run a with 2 stages and validation, run b training only.
  for (const std::string run : {"a", "b"}) {
    fs::create_directories(dir / run);
    std::ofstream out(dir / run / "metrics.jsonl");
    for (int64_t step = 10; step <= 60; step += 10) {
      MetricsRow row{.step = step, .stage = step > 30, .loss = 5.0 - step / 20.0, .lr = 1e-3};
      out << metrics_json(row) << "\n";
      if (run == "a" && step % 30 == 0)
        out << validation_json({.step = step, .stage = step > 30, .ctx_len = step > 30 ? 256 : 128, .tokens = 1000,
                                .loss = 4.5 - step / 30.0, .perplexity = 1, .bits_per_byte = 1})
            << "\n";
    }
    if (run == "b") out << "{\"step\": 70, \"los";  // a line torn by a crash
  }
  const std::string script = (rwkv::test::source_dir() / "scripts" / "plot_metrics.py").string();
  std::string out;
  const int rc = rwkv::test::run(fmt::format("{} {} {} {}/metrics.jsonl -o {}", rwkv::test::python(), script,
                                             (dir / "a").string(), (dir / "b").string(), (dir / "both.png").string()),
                                 &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("a: 6 training records, 2 validation records, last validation loss 2.5000 at step 60 "
                                  "(ctx_len 256)"));
  CHECK_THAT(out, Catch::Contains("b: 6 training records, 0 validation records\n"));
  CHECK_THAT(out, Catch::Contains("metrics.jsonl:7: skipped an unreadable line"));
  CHECK(rwkv::test::slurp(dir / "both.png").rfind("\x89PNG\r\n\x1a\n", 0) == 0);

  // One run: the picture beside its metrics by default.
  REQUIRE(rwkv::test::run(fmt::format("{} {} {}", rwkv::test::python(), script, (dir / "a").string()), &out) == 0);
  CHECK(fs::file_size(dir / "a" / "metrics.png") > 1000);
  // Nothing to draw, or no output named for several runs: an error naming why.
  std::ofstream(dir / "empty.jsonl") << "\n";
  CHECK(rwkv::test::run(fmt::format("{} {} {}", rwkv::test::python(), script, (dir / "empty.jsonl").string()), &out) != 0);
  CHECK_THAT(out, Catch::Contains("empty.jsonl: no metrics records"));
  CHECK(rwkv::test::run(fmt::format("{} {} {} {}", rwkv::test::python(), script, (dir / "a").string(),
                                    (dir / "b").string()),
                        &out) != 0);
  CHECK_THAT(out, Catch::Contains("several runs: give the picture's path with -o"));
}
