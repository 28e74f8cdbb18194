// Bad config input that used to be accepted silently: duplicate keys, lr_mult typos and how a
// given lr_mult meets the defaults, counts that overflow the 64-bit step arithmetic, `--set key=`
// with nothing, reals that fp32 cannot hold, too many threads, log settings out of range; and the
// per-field resume rules of the tables against the documented list (trainer/config/run_config.h).
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <thread>

#include "rwkv/model.h"
#include "tests/support/test_util.h"
#include "trainer/config/model_config_yaml.h"
#include "trainer/config/run_config.h"
#include "tests/trainer/config/run_config_fixture.h"
#include "trainer/config/yaml_section.h"

using namespace rwkv::trainer;
using rwkv::trainer::test::error_of;
using rwkv::trainer::test::kBase;
using rwkv::trainer::test::with;

namespace {

RunConfig parse(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  std::vector<Override> o;
  for (const auto& s : sets) o.push_back(parse_override(s));
  return parse_run_config(yaml, "cfg.yaml", o);
}

}  // namespace

TEST_CASE("config: a key given twice in one mapping is an error naming both lines", "[config]") {
  // yaml-cpp itself keeps the first silently.
  CHECK_THAT(error_of(with("  epoch_count: 10\n", "  epoch_count: 10\n  micro_batch: 16\n")),
             Catch::Contains("cfg.yaml:14: train.micro_batch: duplicate key (first given on line 11)"));
  CHECK_THAT(error_of(kBase + "optimizer:\n  lr_init: 1.0\n"),
             Catch::Contains("cfg.yaml:19: optimizer: duplicate key (first given on line 14)"));
  CHECK_THAT(error_of(kBase + "stages:\n  - {ctx_len: 128, steps: 3, steps: 4}\n"),
             Catch::Contains("cfg.yaml:20: stages[0].steps: duplicate key"));
  CHECK_THAT(error_of(kBase + "  lr_mult: {time_decay: 2, time_decay: 4}\n"),
             Catch::Contains("cfg.yaml:19: optimizer.lr_mult.time_decay: duplicate key"));
  // The same keys in different mappings are not duplicates.
  CHECK_NOTHROW(parse(kBase + "log: {every_steps: 5}\ncheckpoint: {every_steps: 7}\n"));

  // Every reader of config files: `rwkv info` (the model: section alone) too.
  rwkv::test::TempDir dir("rwkv-dup-key");
  const auto path = dir / "dup.yaml";
  std::ofstream(path) << "model:\n  n_layer: 2\n  n_embd: 64\n  n_layer: 4\n  vocab_size: 256\n";
  CHECK_THROWS_WITH(rwkv::model_config_from_file(path.string()),
                    Catch::Contains("dup.yaml:4: model.n_layer: duplicate key (first given on line 2)"));
  std::string out;
  CHECK(rwkv::test::run(rwkv::test::rwkv_binary().string() + " info " + path.string(), &out) != 0);
  CHECK_THAT(out, Catch::Contains("model.n_layer: duplicate key"));
}

TEST_CASE("config: lr_mult keys must match a parameter; a given map merges into the defaults", "[config]") {
  CHECK_THAT(error_of(kBase + "  lr_mult: {time_decy: 2}\n"),
             Catch::Contains("cfg.yaml:19: optimizer.lr_mult.time_decy: matches no parameter of the model") &&
                 Catch::Contains("time_decay, time_first"));
  // lr_multiplier matches the last name component only, so a dotted key would never apply.
  CHECK_THAT(error_of(kBase + "  lr_mult: {head.weight: 0.5}\n"),
             Catch::Contains("optimizer.lr_mult.head.weight: matches no parameter"));
  CHECK_THAT(error_of(kBase + "  lr_mult: {tim_*: 5}\n"), Catch::Contains("optimizer.lr_mult.tim_*: matches no parameter"));
  CHECK_THAT(error_of(kBase + "stages:\n  - {ctx_len: 128, steps: 3, lr_mult: {time_frist: 1}}\n"),
             Catch::Contains("cfg.yaml:20: stages[0].lr_mult.time_frist: matches no parameter"));
  CHECK_THAT(error_of(kBase + "  lr_mult: {time_decay: 0}\n"),
             Catch::Contains("optimizer.lr_mult.time_decay: expected a positive multiplier"));

  // The multiplier every parameter of the real model gets, against the rule written out by hand:
  // given keys replace the defaults {time_decay: 2, time_first: 3} they match, the rest stay.
  const rwkv::RWKV model(rwkv::ModelConfig{2, 64, 256}, torch::TensorOptions().device(torch::kMeta));
  const auto expect = [&](const std::string& lr_mult, double decay, double first, double mix, double weight,
                          double bias) {
    INFO(lr_mult);
    const RunConfig c = parse(kBase + "  lr_mult: " + lr_mult + "\n");
    // The effective YAML keeps the merged map: reading it back changes nothing.
    CHECK(parse_run_config(c.to_yaml(), "saved.yaml").optimizer.lr_mult == c.optimizer.lr_mult);
    CHECK(c.stages[0].lr_mult == c.optimizer.lr_mult);
    for (const auto& p : model->named_parameters()) {
      const std::string& n = p.key();
      const double want = n.ends_with(".time_decay")   ? decay
                          : n.ends_with(".time_first") ? first
                          : n.find(".time_mix_") != std::string::npos ? mix
                          : n.ends_with(".weight")     ? weight
                                                       : bias;
      REQUIRE((n.ends_with(".weight") || n.ends_with(".bias") || n.find(".time_") != std::string::npos));
      INFO(n);
      CHECK(lr_multiplier(n, c.optimizer.lr_mult) == want);
    }
  };
  expect("{time_decay: 4}", 4, 3, 1, 1, 1);
  expect("{time_first: 1}", 2, 1, 1, 1, 1);
  expect("{\"time_*\": 5}", 5, 5, 5, 1, 1);
  expect("{weight: 0.5, bias: 0.25}", 2, 3, 1, 0.5, 0.25);
  expect("{\"time_m*\": 7}", 2, 3, 7, 1, 1);
  CHECK(parse(kBase + "  lr_mult: {\"time_*\": 5}\n").optimizer.lr_mult == LrMult{{"time_*", 5}});

  // A stage merges into the optimizer's map the same way.
  const RunConfig staged = parse(kBase + "  lr_mult: {time_decay: 4}\nstages:\n"
                                         "  - {ctx_len: 128, steps: 3}\n"
                                         "  - {ctx_len: 128, steps: 3, lr_mult: {time_first: 6}}\n");
  CHECK(staged.stages[0].lr_mult == LrMult{{"time_decay", 4}, {"time_first", 3}});
  CHECK(staged.stages[1].lr_mult == LrMult{{"time_decay", 4}, {"time_first", 6}});
}

TEST_CASE("config: counts whose steps, samples or tokens overflow 64 bits are errors naming the key", "[config]") {
  // kBase: 16 samples per step, 2520 steps per mini-epoch, 129 tokens per sample.
  const int64_t max_epochs = std::numeric_limits<int64_t>::max() / (int64_t{40320} * 129);
  const RunConfig c = parse(kBase, {fmt::format("train.epoch_count={}", max_epochs)});
  CHECK(static_cast<__int128>(c.stages[0].steps) * 16 * 129 <= std::numeric_limits<int64_t>::max());
  CHECK(c.stages[0].steps == max_epochs * 2520);
  CHECK_THAT(error_of(kBase, {parse_override(fmt::format("train.epoch_count={}", max_epochs + 1))}),
             Catch::Contains("cfg.yaml:13: train.epoch_count: ") && Catch::Contains("overflow"));
  // ... and one whose product wraps (it used to end the run at step 0, exit status 0).
  CHECK_THAT(error_of(with("epoch_count: 10", "epoch_count: 4000000000000000000")),
             Catch::Contains("cfg.yaml:13: train.epoch_count: 4000000000000000000 mini-epochs of 2520 steps overflow"));

  const std::string staged = kBase + "stages:\n";
  CHECK_THAT(error_of(staged + "  - {ctx_len: 128, epoch_count: 4000000000000000000}\n"),
             Catch::Contains("cfg.yaml:20: stages[0].epoch_count:") && Catch::Contains("overflow"));
  CHECK_THAT(error_of(staged + "  - {ctx_len: 128, steps: 9000000000000000000}\n"),
             Catch::Contains("stages[0].steps: 9000000000000000000 steps of 16 samples of 129 tokens overflow"));
  CHECK_THAT(error_of(staged + "  - {ctx_len: 9223372036854775807, steps: 1}\n"),
             Catch::Contains("stages[0].steps: 1 steps of 16 samples of 9223372036854775808 tokens overflow"));
  CHECK_THAT(error_of(staged + "  - {ctx_len: 128, tokens: 9223372036854775807}\n"),
             Catch::Contains("stages[0].tokens:") && Catch::Contains("overflow"));
  CHECK_THAT(error_of(staged + "  - {ctx_len: 128, steps: 3, constant_epochs: 4000000000000000000}\n"),
             Catch::Contains("stages[0].constant_epochs:") && Catch::Contains("overflow"));
  // Each stage fits, the run does not.
  const int64_t half = std::numeric_limits<int64_t>::max() / (16 * 129) / 2 + 1;
  CHECK_NOTHROW(parse(staged + fmt::format("  - {{ctx_len: 128, steps: {}}}\n", half)));
  CHECK_THAT(error_of(staged + fmt::format("  - {{ctx_len: 128, steps: {0}}}\n  - {{ctx_len: 128, steps: {0}}}\n", half)),
             Catch::Contains("stages[1].steps: the stages' tokens together overflow"));
  // A global batch whose product wraps.
  CHECK_THAT(error_of(kBase, {parse_override("data.sampler=random"), parse_override("train.micro_batch=4294967296"),
                              parse_override("train.grad_accum=4294967296")}),
             Catch::Contains("train.micro_batch: the global batch micro_batch*grad_accum = 4294967296*4294967296 "
                             "overflows 64 bits"));
}

TEST_CASE("config: --set with an empty or null value is an error, not a removed setting", "[config]") {
  CHECK_THROWS_WITH(parse_override("train.max_steps="), Catch::Contains("empty value") && Catch::Contains("key=\"\""));
  CHECK_THROWS_WITH(parse_override("optimizer.lr_init=  "), Catch::Contains("empty value"));
  // `lr_init` is required: removing it must not slip through as "missing" either.
  CHECK_THAT(error_of(kBase, {parse_override("optimizer.lr_init=~")}),
             Catch::Contains("--set optimizer.lr_init=~: a null value would remove the setting"));
  CHECK_THAT(error_of(kBase, {parse_override("train.max_steps=null")}), Catch::Contains("null value"));
  // An empty text is written as one.
  const RunConfig c = parse(kBase + "checkpoint: {init_from: old.pth}\n", {"checkpoint.init_from=\"\""});
  CHECK(c.checkpoint.init_from.empty());
}

TEST_CASE("config: reals the fp32 optimizer cannot hold are errors naming the key", "[config]") {
  // Why: in fp32 these become 0 (Adam divides by √v + 0: NaN) or inf.
  REQUIRE(static_cast<float>(1e-300) == 0.0f);
  REQUIRE(std::isinf(static_cast<float>(1e39)));
  REQUIRE(static_cast<float>(0.999999999) == 1.0f);
  const auto fp32_error = [](const std::string& yaml, const std::string& key) {
    const std::string e = error_of(yaml);
    INFO(e);
    CHECK_THAT(e, Catch::Contains(key) && Catch::Contains("fp32"));
  };
  fp32_error(kBase + "  eps: 1.0e-300\n", "cfg.yaml:19: optimizer.eps: expected a positive number within fp32's range");
  fp32_error(with("lr_init: 6.0e-4", "lr_init: 1.0e39"), "cfg.yaml:15: optimizer.lr_init");
  fp32_error(with("lr_final: 1.0e-5", "lr_final: 1.0e-45"), "optimizer.lr_final");
  fp32_error(kBase + "  weight_decay: 1.0e-40\n", "optimizer.weight_decay");
  fp32_error(kBase + "  grad_clip: 1.0e39\n", "optimizer.grad_clip");
  fp32_error(kBase + "  l2wrap: 1.0e-39\n", "optimizer.l2wrap");
  fp32_error(kBase + "  lr_mult: {time_decay: 1.0e39}\n", "optimizer.lr_mult.time_decay");
  fp32_error(kBase + "  betas: [0.9, 0.999999999]\n", "optimizer.betas");
  fp32_error(kBase + "stages:\n  - {ctx_len: 128, steps: 3, lr_init: 1.0e-39}\n", "stages[0].lr_init");
  // The edges of the range, and 0 where 0 means off, are fine.
  const RunConfig ok = parse(kBase + "  eps: 1.2e-38\n  weight_decay: 0\n  grad_clip: 0\n  l2wrap: 0\n"
                                     "  betas: [0, 0.9999999]\n",
                             {"optimizer.lr_init=3.4e38", "optimizer.lr_final=3.4e38"});
  CHECK(ok.optimizer.eps == 1.2e-38);
  CHECK(ok.optimizer.lr_init == 3.4e38);
  CHECK(ok.optimizer.beta2 == 0.9999999);
  // Sizes and timeouts that the loop turns into integers.
  CHECK_THAT(error_of(kBase, {parse_override("train.grad_bucket_mb=1e-9")}),
             Catch::Contains("train.grad_bucket_mb: expected a size in MiB from 0.001 to 1048576, got '1e-9'"));
  CHECK_THAT(error_of(kBase, {parse_override("train.dist_timeout_s=1e300")}),
             Catch::Contains("train.dist_timeout_s: expected a number of seconds from 0.001 to 1e9"));
}

TEST_CASE("config: train.threads above 4 per core is capped with a warning naming the key", "[config]") {
  const int64_t cores = std::thread::hardware_concurrency();
  if (cores == 0) {
    WARN("skipped: the core count is unknown here");
    return;
  }
  const RunConfig c = parse(with("  epoch_count: 10\n", "  epoch_count: 10\n  threads: 100000\n"));
  CHECK(c.train.threads == 4 * cores);
  REQUIRE(c.warnings.size() == 1);
  CHECK_THAT(c.warnings[0], Catch::Contains("cfg.yaml:14: train.threads: 100000 is more than 4 threads per core") &&
                                Catch::Contains(fmt::format("using {}", 4 * cores)));
  const RunConfig fine = parse(kBase, {fmt::format("train.threads={}", 4 * cores)});
  CHECK(fine.train.threads == 4 * cores);
  CHECK(fine.warnings.empty());

  // `rwkv train` prints the warning (here before it stops at the missing data file).
  rwkv::test::TempDir dir("rwkv-threads");
  const auto path = dir / "run.yaml";
  std::ofstream(path) << with("path: corpus", "path: " + (dir / "no-such-data").string());
  std::string out;
  CHECK(rwkv::test::run(fmt::format("{} train {} --set train.threads=100000 --set train.run_dir={}",
                                    rwkv::test::rwkv_binary().string(), path.string(), (dir / "run").string()),
                        &out) != 0);
  CHECK_THAT(out, Catch::Contains("warning: " + path.string() + ": train.threads: 100000 is more than 4 threads"));
}

TEST_CASE("config: each field's resume rule is the documented one", "[config]") {
  // The documented list (run_config.h): caps, paths, cadences, how the work is spread over threads
  // and ranks, and what is printed are safe; whatever shapes the model, the data order, the batch,
  // the schedule or the update is not. One change per field of every table.
  const std::pair<const char*, bool> changes[] = {
      {"model.n_layer=3", false},           {"model.n_embd=96", false},
      {"model.vocab_size=300", false},      {"model.dim_att=32", false},
      {"model.dim_ffn=128", false},         {"data.path=other", false},
      {"data.tokenizer=tok.json", false},   {"data.sampler=random", false},
      {"data.ctx_len=64", false},           {"train.run_dir=runs/u", true},
      {"train.micro_batch=4", false},       {"train.grad_accum=4", false},
      {"train.epoch_samples=20160", false}, {"train.epoch_count=11", false},
      {"train.max_steps=7", true},          {"train.seed=5", false},
      {"train.precision=fp32", false},      {"train.device=cpu", false},
      {"train.nan_skip_limit=3", true},     {"train.threads=1", true},
      {"train.activation_checkpointing=true", true}, {"train.dist_timeout_s=30", true},
      {"train.zero_stage=2", true},         {"train.grad_bucket_mb=1", true},
      {"train.overlap_grad_reduce=false", true}, {"optimizer.lr_init=1e-3", false},
      {"optimizer.lr_final=2e-5", false},   {"optimizer.constant_epochs=3", false},
      {"optimizer.warmup_steps=5", false},  {"optimizer.betas=[0.8, 0.9]", false},
      {"optimizer.eps=1e-6", false},        {"optimizer.weight_decay=0.1", false},
      {"optimizer.grad_clip=0.5", false},   {"optimizer.lr_mult={time_first: 1}", false},
      {"optimizer.l2wrap=0", false},        {"checkpoint.dir=elsewhere", true},
      {"checkpoint.every_steps=3", true},   {"checkpoint.keep=9", true},
      {"checkpoint.resume=never", true},    {"checkpoint.init_from=w.pth", true},
      {"checkpoint.write_timeout_s=60", true}, {"checkpoint.async=false", true},
      {"train.segment_len=16", true},       {"train.segment_grad=truncated", false},
      {"log.every_steps=1", true},          {"log.peak_tflops=989", true},
      {"log.level=debug", true},            {"log.console=all", true},
      {"log.file_max_mb=1", true},          {"log.file_keep=0", true},
      {"sample.prompt=Hi", true},           {"sample.length=5", true},
      {"sample.temperature=0", true},       {"validation.split_tokens=2000", false},
      {"validation.max_tokens=500", true},  {"validation.every_steps=7", true},
      {"validation.batch=2", true},
  };
  // With a validation section (written only when there is one; of path and split_tokens only the
  // one given): validation.path is checked below.
  const std::string base = kBase + "validation: {split_tokens: 1000}\n";
  const RunConfig saved = parse(base);
  // The list names every field that the effective config writes, once.
  std::set<std::string> listed, written;
  for (const auto& [change, is_safe] : changes) listed.insert(std::string(change).substr(0, std::string(change).find('=')));
  for (const auto& section : YAML::Load(saved.to_yaml()))
    for (const auto& field : section.second) written.insert(section.first.Scalar() + "." + field.first.Scalar());
  CHECK(listed == written);
  CHECK(listed.size() == std::size(changes));
  for (const auto& [change, is_safe] : changes) {
    INFO(change);
    const std::string why = unsafe_resume_change(saved, parse(base, {change}));
    CHECK(why.empty() == is_safe);
  }
  // Another held-out file changes what is measured, not what is trained; adding, removing or
  // changing a split changes the training order.
  const RunConfig held = parse(kBase + "validation: {path: held}\n");
  CHECK(unsafe_resume_change(held, parse(kBase + "validation: {path: other}\n")).empty());
  CHECK(unsafe_resume_change(parse(kBase), held).empty());
  CHECK(unsafe_resume_change(held, parse(kBase)).empty());
  CHECK(unsafe_resume_change(parse(kBase), saved) == "validation.split_tokens: (absent) -> 1000");
  CHECK(unsafe_resume_change(saved, held) == "validation.split_tokens: 1000 -> (absent)");
  // Existing stages are fixed, appended ones may come.
  const RunConfig staged = parse(kBase + "stages:\n  - {ctx_len: 128, steps: 10}\n");
  CHECK(unsafe_resume_change(staged, parse(kBase + "stages:\n  - {ctx_len: 128, steps: 11}\n")) ==
        "stages.0.steps: 10 -> 11");
  CHECK(unsafe_resume_change(staged, parse(kBase + "stages:\n  - {ctx_len: 128, steps: 10, lr_mult: {time_first: 1}}\n")) ==
        "stages.0.lr_mult.time_first: 3 -> 1");
  CHECK(unsafe_resume_change(staged, parse(kBase + "stages:\n  - {ctx_len: 128, steps: 10}\n  - {ctx_len: 64, steps: 1}\n"))
            .empty());
}

TEST_CASE("config: the validation section names its held-out data once; bad values name the key", "[config]") {
  // kBase has 18 lines: the section is line 19.
  CHECK_THAT(error_of(kBase + "validation: {path: held, split_tokens: 100}\n"),
             Catch::Contains("cfg.yaml:19: validation.split_tokens: give either path (a held-out file) or split_tokens"));
  CHECK_THAT(error_of(kBase + "validation: {every_steps: 10}\n"),
             Catch::Contains("cfg.yaml:19: validation: no held-out data: give path") && Catch::Contains("split_tokens"));
  // An override alone does not switch validation on by accident either.
  CHECK_THAT(error_of(kBase, {parse_override("validation.every_steps=5")}),
             Catch::Contains("validation: no held-out data"));
  CHECK_THAT(error_of(kBase + "validation: {split_tokens: -1}\n"),
             Catch::Contains("cfg.yaml:19: validation.split_tokens: expected a non-negative integer"));
  CHECK_THAT(error_of(kBase + "validation: {path: held, max_tokens: 1}\n"),
             Catch::Contains("validation.max_tokens: expected 0 (all held-out tokens) or a token count of at least 2, got '1'"));
  CHECK_THAT(error_of(kBase + "validation: {path: held, batch: 0}\n"),
             Catch::Contains("validation.batch: expected a positive integer (windows per forward pass), got '0'"));
  CHECK_THAT(error_of(kBase + "validation: {path: held, every_steps: -3}\n"),
             Catch::Contains("validation.every_steps: expected a non-negative integer"));
  CHECK_THAT(error_of(kBase + "validation: {path: held, evry_steps: 3}\n"),
             Catch::Contains("cfg.yaml:19: validation.evry_steps: unknown key"));
  CHECK_THAT(error_of(kBase + "validaton: {path: held}\n"),
             Catch::Contains("cfg.yaml:19: validaton: unknown section") && Catch::Contains("validation"));

  // The effective YAML keeps the section (only when there is one) and reads back the same.
  const RunConfig c = parse(kBase + "validation: {path: held.txt, max_tokens: 4096, every_steps: 50, batch: 2}\n");
  const RunConfig back = parse_run_config(c.to_yaml(), "saved.yaml");
  CHECK(back.validation.path == "held.txt");
  CHECK(back.validation.split_tokens == 0);
  CHECK(c.to_yaml().find("split_tokens") == std::string::npos);  // only the source given is written
  CHECK(back.validation.max_tokens == 4096);
  CHECK(back.validation.every_steps == 50);
  CHECK(back.validation.batch == 2);
  CHECK_FALSE(parse(kBase).validation.enabled());
  CHECK(parse(kBase).to_yaml().find("validation") == std::string::npos);
}

TEST_CASE("config: the log section's level, console and file limits name the key and the choices", "[config]") {
  // kBase has 18 lines: the section is line 19.
  CHECK_THAT(error_of(kBase + "log: {level: loud}\n"),
             Catch::Contains("cfg.yaml:19: log.level: expected one of trace|debug|info|warn|error, got 'loud'"));
  CHECK_THAT(error_of(kBase + "log: {console: rank1}\n"),
             Catch::Contains("cfg.yaml:19: log.console: expected one of rank0|all|none, got 'rank1'"));
  CHECK_THAT(error_of(kBase + "log: {file_max_mb: 0}\n"),
             Catch::Contains("cfg.yaml:19: log.file_max_mb: expected a size in MiB from 0.001 to 1048576"));
  CHECK_THAT(error_of(kBase + "log: {file_keep: -1}\n"),
             Catch::Contains("cfg.yaml:19: log.file_keep: expected an integer from 0 to 1000"));
  const RunConfig given = parse(kBase + "log: {level: warn, console: all, file_max_mb: 0.5, file_keep: 0}\n");
  CHECK(given.log.level == rwkv::logging::Level::warn);
  CHECK(given.log.console == LogConsole::all);
  CHECK(given.log.file_max_mb == 0.5);
  CHECK(given.log.file_keep == 0);
  // The defaults, and the effective config reads back the same.
  const RunConfig plain = parse(kBase);
  CHECK(plain.log.level == rwkv::logging::Level::info);
  CHECK(plain.log.console == LogConsole::rank0);
  const RunConfig again = parse_run_config(given.to_yaml(), "effective.yaml");
  CHECK(again.log.level == rwkv::logging::Level::warn);
  CHECK(again.log.console == LogConsole::all);
  CHECK(again.log.file_max_mb == 0.5);
  CHECK(again.log.file_keep == 0);
}
