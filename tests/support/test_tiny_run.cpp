#include "tests/support/test_tiny_run.h"

#include <fstream>
#include <memory>

#include <fmt/format.h>

#include "tests/support/test_util.h"
#include "trainer/checkpoint/checkpoint.h"

namespace rwkv::test {

const TinyRun& tiny_trained_run() {
  static std::unique_ptr<TempDir> dir;
  static TinyRun run;
  static bool ready = false;
  if (ready) return run;
  if (dir) FAIL("building the tiny trained run failed in an earlier test");
  dir = std::make_unique<TempDir>("rwkv-tiny-run");
  run.run_dir = *dir / "run";
  run.tokens = *dir / "tok";
  run.text = *dir / "text" / "corpus.txt";
  std::filesystem::create_directories(run.text.parent_path());
  std::ofstream text(run.text);
  for (int i = 0; i < 300; ++i) text << "the quick brown fox " << i % 13 << " jumps over the lazy dog.\n";
  text.close();
  std::string out;
  const std::string bin = rwkv_binary().string();
  const int prep = test::run(fmt::format("{} prep {} -o {} --tokenizer byte --quiet", bin,
                                         run.text.parent_path().string(), run.tokens.string()), &out);
  INFO(out);
  REQUIRE(prep == 0);
  std::ofstream(*dir / "run.yaml") << fmt::format(R"(model: {{n_layer: 2, n_embd: 32, vocab_size: 256}}
data: {{path: "{}", ctx_len: 16}}
train: {{run_dir: "{}", micro_batch: 4, epoch_samples: 40, epoch_count: 3, device: cpu, threads: 1}}
optimizer: {{lr_init: 3.0e-3, lr_final: 1.0e-3, warmup_steps: 2}}
checkpoint: {{every_steps: 1000}}
log: {{every_steps: 10}}
)",
                                                  run.tokens.string(), run.run_dir.string());
  const int rc = test::run(fmt::format("{} train {}", bin, (*dir / "run.yaml").string()), &out);
  INFO(out);
  REQUIRE(rc == 0);
  const auto ckpts = trainer::list_checkpoints(run.run_dir / "checkpoints");
  REQUIRE(!ckpts.empty());
  run.checkpoint = ckpts.back();
  ready = true;
  return run;
}

}  // namespace rwkv::test
