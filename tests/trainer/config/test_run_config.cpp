// The run config: defaults, stages, overrides, the effective YAML round trip, resume safety, and
// one message per class of bad config (file:line and the field).
#include <catch2/catch.hpp>

#include <string>

#include "trainer/config/yaml_section.h"
#include "trainer/config/run_config.h"
#include "tests/trainer/config/run_config_fixture.h"
#include "tests/support/test_util.h"

using namespace rwkv::trainer;
using rwkv::trainer::test::error_of;
using rwkv::trainer::test::kBase;
using rwkv::trainer::test::with;


TEST_CASE("run config: defaults of the recipe and the implicit single stage", "[config]") {
  const auto c = parse_run_config(kBase, "cfg.yaml");
  CHECK(c.optimizer.beta1 == 0.9);
  CHECK(c.optimizer.beta2 == 0.99);
  CHECK(c.optimizer.eps == 1e-8);
  CHECK(c.optimizer.weight_decay == 0);
  CHECK(c.optimizer.grad_clip == 1.0);
  CHECK(c.optimizer.l2wrap == 1e-4);
  CHECK(c.optimizer.lr_mult.at("time_decay") == 2.0);
  CHECK(c.optimizer.lr_mult.at("time_first") == 3.0);
  CHECK(c.train.epoch_samples == 40320);
  CHECK(c.train.overlap_grad_reduce);
  CHECK(c.checkpoint.dir == "runs/t/checkpoints");
  REQUIRE(c.stages.size() == 1);
  const auto& s = c.stages[0];
  CHECK(s.global_batch() == 16);
  CHECK(c.steps_per_epoch(s) == 40320 / 16);
  CHECK(s.steps == 10 * 2520);
  CHECK(s.constant_steps == 4 * 2520);
  CHECK(s.ctx_len == 128);
}

TEST_CASE("run config: stages inherit, convert tokens to steps, and round-trip through YAML", "[config]") {
  const std::string yaml = kBase + R"(stages:
  - {ctx_len: 128, epoch_count: 2}
  - {ctx_len: 256, tokens: 1000000, lr_init: 1.0e-5, micro_batch: 4}
  - {ctx_len: 512, steps: 7, lr_mult: {"time_*": 5}}
)";
  const auto c = parse_run_config(yaml, "cfg.yaml");
  REQUIRE(c.stages.size() == 3);
  CHECK(c.stages[0].steps == 2 * 2520);
  CHECK(c.stages[0].lr_final == 1e-5);  // inherited
  CHECK(c.stages[1].micro_batch == 4);
  CHECK(c.stages[1].steps == (1000000 + 8 * 256 - 1) / (8 * 256));
  CHECK(c.stages[1].lr_final == 1e-5);  // lr_init given: lr_final defaults to it (constant)
  CHECK(c.stages[2].steps == 7);
  CHECK(c.stages[2].lr_mult.at("time_*") == 5);
  CHECK(c.stages[2].lr_mult.count("time_decay") == 0);
  CHECK(c.total_steps() == 2 * 2520 + c.stages[1].steps + 7);

  const auto again = parse_run_config(c.to_yaml(), "effective.yaml");
  CHECK(again.to_yaml() == c.to_yaml());
  CHECK(again.stages[1].steps == c.stages[1].steps);
}

TEST_CASE("run config: --set overrides apply before validation", "[config]") {
  const auto c = parse_run_config(kBase, "cfg.yaml",
                                  {parse_override("train.max_steps=100"), parse_override("optimizer.betas=[0.8, 0.95]"),
                                   parse_override("log.every_steps=3")});
  CHECK(c.train.max_steps == 100);
  CHECK(c.optimizer.beta1 == 0.8);
  CHECK(c.optimizer.beta2 == 0.95);
  CHECK(c.log.every_steps == 3);
  CHECK(c.to_yaml() != parse_run_config(kBase, "cfg.yaml").to_yaml());  // the effective config records them
  CHECK_THAT(error_of(kBase, {parse_override("train.micro_batch=abc")}),
             Catch::Contains("train.micro_batch") && Catch::Contains("abc"));
  CHECK_THROWS_WITH(parse_override("train.max_steps"), Catch::Contains("no '='"));
  CHECK_THROWS_WITH(parse_override("max_steps=3"), Catch::Contains("needs a section"));
}

TEST_CASE("run config: each class of bad config names file, line and field", "[config]") {
  // unknown key (line 13 is grad_accum's line, replaced)
  CHECK_THAT(error_of(with("  grad_accum: 2", "  grad_acum: 2")),
             Catch::Contains("cfg.yaml:12: train.grad_acum: unknown key"));
  // wrong type
  CHECK_THAT(error_of(with("micro_batch: 8", "micro_batch: eight")),
             Catch::Contains("cfg.yaml:11: train.micro_batch") && Catch::Contains("positive integer"));
  // missing required field
  CHECK_THAT(error_of(with("  lr_init: 6.0e-4\n", "")), Catch::Contains("optimizer.lr_init: missing"));
  // missing section
  CHECK_THAT(error_of(with("optimizer:", "optimiser:")),
             Catch::Contains("cfg.yaml:14: optimiser: unknown section (known: model, data, train"));
  // out of range
  CHECK_THAT(error_of(with("lr_final: 1.0e-5", "lr_final: 1.0e-2")),
             Catch::Contains("cfg.yaml:16: optimizer.lr_final: must not exceed lr_init"));
  CHECK_THAT(error_of(with("warmup_steps: 50", "warmup_steps: -1")),
             Catch::Contains("cfg.yaml:18: optimizer.warmup_steps"));
  // enum
  CHECK_THAT(error_of(with("sampler: magic_prime", "sampler: shuffled")),
             Catch::Contains("cfg.yaml:7: data.sampler: expected one of magic_prime|random, got 'shuffled'"));
  // global batch not dividing the mini-epoch in magic_prime mode
  CHECK_THAT(error_of(with("micro_batch: 8", "micro_batch: 11")),
             Catch::Contains("cfg.yaml:11: train.micro_batch") && Catch::Contains("must divide train.epoch_samples = 40320"));
  // ... which random sampling allows
  CHECK_NOTHROW(parse_run_config(with("micro_batch: 8", "micro_batch: 11"), "cfg.yaml",
                                 {parse_override("data.sampler=random")}));
  // D not a multiple of 32 on CUDA
  CHECK_THAT(error_of(with("n_embd: 64", "n_embd: 48"), {parse_override("train.device=cuda")}),
             Catch::Contains("train.device: cuda needs model.n_embd to be a multiple of 32, got 48"));
  // bf16 trains on the CPU too (bf16 parameters, fp32 masters), but only the three names parse
  CHECK(error_of(kBase, {parse_override("train.device=cpu"), parse_override("train.precision=bf16")}) == "(no error)");
  CHECK_THAT(error_of(kBase, {parse_override("train.precision=fp16")}), Catch::Contains("train.precision"));
  // constant phase longer than the schedule
  CHECK_THAT(error_of(with("constant_epochs: 4", "constant_epochs: 11")),
             Catch::Contains("cfg.yaml:17: optimizer.constant_epochs: 11 exceeds train.epoch_count = 10"));
  // a stage without a length, and one with two
  CHECK_THAT(error_of(kBase + "stages:\n  - {ctx_len: 256}\n"),
             Catch::Contains("cfg.yaml:20: stages[0].steps: give exactly one of steps, tokens or epoch_count"));
  CHECK_THAT(error_of(kBase + "stages:\n  - {ctx_len: 256, steps: 3, tokens: 5}\n"),
             Catch::Contains("stages[0].steps: give exactly one"));
  CHECK_THAT(error_of(kBase + "stages:\n  - {ctx_len: 256, steps: 3, ctx: 5}\n"),
             Catch::Contains("stages[0].ctx: unknown key"));
  // invalid YAML
  CHECK_THAT(error_of(kBase + "  bad: [1, 2\n"), Catch::Contains("cfg.yaml:") && Catch::Contains("invalid YAML"));
  CHECK_THAT(error_of(kBase, {parse_override("train.overlap_grad_reduce=sometimes")}),
             Catch::Contains("train.overlap_grad_reduce") && Catch::Contains("true or false"));
  // a model section problem goes through model_config_from_yaml
  CHECK_THAT(error_of(with("n_layer: 2", "n_layer: 0")), Catch::Contains("cfg.yaml:2: model.n_layer"));
}

TEST_CASE("run config: resume safety names the first unsafe field", "[config]") {
  const auto saved = parse_run_config(kBase, "cfg.yaml");
  const auto safe = parse_run_config(kBase, "cfg.yaml",
                                     {parse_override("train.max_steps=5"), parse_override("log.every_steps=1"),
                                      parse_override("checkpoint.every_steps=2"), parse_override("checkpoint.keep=9"),
                                      parse_override("train.overlap_grad_reduce=false")});
  CHECK(unsafe_resume_change(saved, safe).empty());
  CHECK(unsafe_resume_change(saved, parse_run_config(kBase, "cfg.yaml", {parse_override("train.micro_batch=16")})) ==
        "train.micro_batch: 8 -> 16");
  CHECK(unsafe_resume_change(saved, parse_run_config(kBase, "cfg.yaml", {parse_override("optimizer.lr_init=1e-3")})) ==
        "optimizer.lr_init: 0.0006 -> 0.001");

  const auto staged = parse_run_config(kBase + "stages:\n  - {ctx_len: 128, steps: 10}\n", "cfg.yaml");
  const auto more = parse_run_config(kBase + "stages:\n  - {ctx_len: 128, steps: 10}\n  - {ctx_len: 256, steps: 5}\n", "cfg.yaml");
  CHECK(unsafe_resume_change(staged, more).empty());  // appending a stage
  CHECK_THAT(unsafe_resume_change(more, staged), Catch::StartsWith("stages.1.") && Catch::EndsWith("-> (absent)"));
}
