// [cli] The long commands report progress on stderr (common/progress.h) and keep stdout for their
// results: `rwkv prep`, `rwkv export` and `rwkv eval` into files end their progress with one closing
// line of the whole amount, rate and time taken.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <string>

#include "tests/support/test_tiny_run.h"
#include "tests/support/test_util.h"

namespace {

struct Streams {
  std::string out, err;
};

// Runs `args` with stdout and stderr into files of `dir` (not a terminal: plain progress lines).
Streams rwkv_cli(const rwkv::test::TempDir& dir, const std::string& name, const std::string& args) {
  const auto out = dir / (name + ".out"), err = dir / (name + ".err");
  std::string ignored;
  // a subshell: run() adds its own 2>&1 to the command
  const int rc = rwkv::test::run(fmt::format("({} {} > {} 2> {})", rwkv::test::rwkv_binary().string(), args,
                                             out.string(), err.string()), &ignored);
  Streams s{rwkv::test::slurp(out), rwkv::test::slurp(err)};
  INFO(s.out << s.err);
  REQUIRE(rc == 0);
  return s;
}

}  // namespace

TEST_CASE("prep, export and eval: progress on stderr ending in a closing line, results on stdout", "[cli]") {
  const auto& tiny = rwkv::test::tiny_trained_run();
  rwkv::test::TempDir dir("rwkv-cli-progress");

  const Streams prep = rwkv_cli(dir, "prep", fmt::format("prep {} -o {}", tiny.text.string(), (dir / "tok").string()));
  // one .txt file: one document of about 14 kB
  CHECK_THAT(prep.err, Catch::Matches("(?:.|\n)*\\[prep\\] ([0-9.]+)/\\1 kB \\(100%\\)  [0-9.]+ [kMG]?B/s  in 0:00:[0-9]{2}  "
                                      "1 docs  [0-9]+ tokens\n"));
  CHECK_THAT(prep.out, Catch::StartsWith("wrote ") && !Catch::Contains("[prep]"));

  const Streams exp = rwkv_cli(dir, "export", fmt::format("export {} --format pth --dtype fp32 --out {}",
                                                          tiny.checkpoint.string(), (dir / "m.pth").string()));
  CHECK_THAT(exp.err, Catch::Contains("[export] writing ") && Catch::Contains("B (100%)") && Catch::EndsWith("\n"));
  CHECK_THAT(exp.out, Catch::StartsWith("exported ") && !Catch::Contains("[export]"));

  const Streams eval = rwkv_cli(dir, "eval", fmt::format("eval {} --data {} --ctx-len 16 --device cpu",
                                                         (dir / "m.pth").string(), tiny.tokens.string()));
  CHECK_THAT(eval.err, Catch::Matches("(?:.|\n)*\\[eval\\] ([0-9.]+)/\\1k tokens \\(100%\\)  [0-9.]+k? tokens/s  in 0:[0-9:]+\n"));
  CHECK_THAT(eval.out, Catch::StartsWith("model: ") && !Catch::Contains("[eval]"));
}
