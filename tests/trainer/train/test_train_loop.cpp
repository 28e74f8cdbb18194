// The run loop's mechanics: bit-exact resume after interruptions (between steps, mid-accumulation,
// mid-stage), torn and corrupt checkpoints skipped, the non-finite guard, and the checkpoint
// files themselves.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "trainer/config/yaml_section.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/train/train_loop.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"

using namespace rwkv::trainer;
using rwkv::NamedTensors;
namespace tt = rwkv::test::trainer;

namespace {

NamedTensors snapshot(torch::nn::Module& m) {
  NamedTensors out;
  for (const auto& kv : m.named_parameters()) out.push_back({kv.key(), kv.value().detach().clone()});
  return out;
}

bool same_weights(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, v] : a) {
    const torch::Tensor* other = rwkv::find_tensor(b, k);
    if (other == nullptr || !torch::equal(v, *other)) return false;
  }
  return true;
}

// Two stages (ctx 8 → 16), grad_accum 2, checkpoints every 3 steps.
RunConfig two_stage_config(const std::string& run_dir) {
  return parse_run_config(tt::config_yaml(run_dir) + R"(stages:
  - {ctx_len: 8, steps: 7, warmup_steps: 3}
  - {ctx_len: 16, steps: 6, lr_init: 2.0e-3, lr_final: 1.0e-3}
)", "test.yaml", {parse_override("checkpoint.every_steps=3"), parse_override("train.grad_accum=2")});
}

}  // namespace

TEST_CASE("resume is bit-exact after interruptions between steps, mid-accumulation and mid-stage", "[train]") {
  rwkv::test::TempDir dir("rwkv-resume");
  const auto full_cfg = two_stage_config((dir / "full").string());
  auto full_env = tt::make_env(full_cfg);
  const auto full = run_training(full_cfg, full_env, tt::quiet());
  REQUIRE(full.exit == TrainExit::finished);
  REQUIRE(full.losses.size() == 13);
  REQUIRE(full.progress.step == 13);

  // Interrupted three times: before micro-batch 1 of step 5 (mid-accumulation), before step 9
  // (mid second stage), and before micro-batch 1 of step 12.
  const auto cfg = two_stage_config((dir / "cut").string());
  std::vector<double> losses;
  const std::vector<std::pair<int64_t, int64_t>> cuts{{4, 1}, {8, 0}, {11, 1}};
  for (size_t run = 0; run <= cuts.size(); ++run) {
    auto env = tt::make_env(cfg);  // a fresh process's worth of state: new model, new init
    TrainControls c = tt::quiet();
    if (run < cuts.size()) {
      const auto [step, micro] = cuts[run];
      c.stop_before = [step, micro](const TrainProgress& p, int64_t m) { return p.step == step && m == micro; };
    }
    const auto r = run_training(cfg, env, c);
    CHECK(r.resumed == (run > 0));
    CHECK(r.exit == (run < cuts.size() ? TrainExit::stopped : TrainExit::finished));
    if (run < cuts.size()) CHECK(r.progress.step == cuts[run].first);
    losses.insert(losses.end(), r.losses.begin(), r.losses.end());
    if (run == cuts.size()) {
      CHECK(same_weights(snapshot(*env.model), snapshot(*full_env.model)));
      CHECK(r.progress == full.progress);
    }
  }
  REQUIRE(losses.size() == full.losses.size());
  for (size_t i = 0; i < losses.size(); ++i) CHECK(losses[i] == full.losses[i]);  // bit-exact
  // the loss went down over the run, so the comparison is not between constant sequences
  CHECK(full.losses.back() < full.losses.front());

  // metrics.jsonl of the interrupted run holds each logged step once
  std::ifstream in(dir / "cut" / "metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  CHECK(lines == 13);  // log.every_steps = 1
}

TEST_CASE("resuming under an unsafe config change is refused, naming the field", "[train]") {
  rwkv::test::TempDir dir("rwkv-resume-cfg");
  auto cfg = parse_run_config(tt::config_yaml(dir.path().string()), "test.yaml", {parse_override("train.max_steps=2")});
  auto env = tt::make_env(cfg);
  run_training(cfg, env, tt::quiet());
  auto safe = parse_run_config(tt::config_yaml(dir.path().string()), "test.yaml", {parse_override("train.max_steps=3")});
  auto env2 = tt::make_env(safe);
  CHECK(run_training(safe, env2, tt::quiet()).progress.step == 3);
  auto bad = parse_run_config(tt::config_yaml(dir.path().string()), "test.yaml", {parse_override("train.micro_batch=2")});
  auto env3 = tt::make_env(bad);
  CHECK_THROWS_WITH(run_training(bad, env3, tt::quiet()),
                    Catch::Contains("cannot resume") && Catch::Contains("train.micro_batch: 4 -> 2"));
}

TEST_CASE("torn and corrupt checkpoints are skipped with a warning", "[train]") {
  rwkv::test::TempDir dir("rwkv-torn");
  auto cfg = parse_run_config(tt::config_yaml(dir.path().string()), "test.yaml",
                              {parse_override("train.max_steps=4"), parse_override("checkpoint.every_steps=2")});
  auto env = tt::make_env(cfg);
  run_training(cfg, env, tt::quiet());
  const auto ckdir = dir.path() / "checkpoints";
  auto complete = list_checkpoints(ckdir);
  REQUIRE(complete.size() == 2);  // steps 2 and 4
  CHECK(complete.back().filename() == "step-00000004");

  // a newer torn one (no marker) and the newest complete one corrupted (one flipped byte)
  std::filesystem::create_directories(ckdir / "step-00000009");
  std::ofstream(ckdir / "step-00000009" / "weights.pt") << "partial";
  {
    std::fstream f(complete.back() / "shard-00000-of-00001.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(200);
    char ch;
    f.read(&ch, 1);
    ch ^= 0x10;
    f.seekp(200);
    f.write(&ch, 1);
  }
  std::vector<std::string> warnings;
  const auto latest = load_latest_checkpoint(ckdir, [&](const std::string& w) { warnings.push_back(w); });
  REQUIRE(latest);
  CHECK(latest->first.filename() == "step-00000002");
  CHECK(latest->second.progress.step == 2);
  REQUIRE(warnings.size() == 2);
  CHECK_THAT(warnings[0], Catch::Contains("step-00000009") && Catch::Contains("no COMPLETE marker"));
  CHECK_THAT(warnings[1], Catch::Contains("step-00000004") && Catch::Contains("shard-00000-of-00001.safetensors does not match its hash"));

  // and the loop resumes from step 2
  auto env2 = tt::make_env(cfg);
  auto c = tt::quiet();
  int warned = 0;
  c.warn = [&](const std::string&) { ++warned; };
  const auto r = run_training(cfg, env2, c);
  CHECK(r.resumed);
  CHECK(r.losses.size() == 2);
  CHECK(warned == 4);  // the two skipped, then the two set aside (trainer/train/run_directory.h)
  CHECK(std::filesystem::exists(ckdir / "unreadable-step-00000009"));
  CHECK(std::filesystem::exists(ckdir / "unreadable-step-00000004"));
}

TEST_CASE("checkpoint round trip keeps every tensor, counter and RNG state", "[train]") {
  rwkv::test::TempDir dir("rwkv-ckpt");
  Checkpoint c;
  c.progress = {.step = 12, .stage = 1, .stage_step = 5, .stage_samples = 40, .adam_steps = 11,
                .skipped_total = 1, .skipped_in_row = 0, .tokens = 1234.5};
  c.weights = {{"blocks.0.att.time_decay", torch::randn({7})}, {"head.weight", torch::randn({3, 4})}};
  for (const char* prefix : {"exp_avg.", "exp_avg_sq."})
    for (const auto& [name, w] : c.weights) c.optimizer.push_back({prefix + name, torch::rand(w.sizes())});
  torch::manual_seed(99);
  capture_rng(c);
  const auto expected_draw = torch::rand({5});
  c.config_yaml = "model: {}\n";
  for (int step : {12, 13, 14}) {
    c.progress.step = step;
    save_checkpoint(dir.path(), c, 2);
  }
  const auto kept = list_checkpoints(dir.path());
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].filename() == "step-00000013");
  const auto back = load_checkpoint(kept[1]);
  CHECK(back.progress == c.progress);
  REQUIRE(back.weights.size() == 2);
  CHECK(back.weights[0].name == "blocks.0.att.time_decay");  // the order they were given in
  CHECK(torch::equal(back.weights[0].tensor, c.weights[0].tensor));
  CHECK(torch::equal(rwkv::test::tensor_named(back.weights, "head.weight"), c.weights[1].tensor));
  for (const auto& [name, m] : c.optimizer) CHECK(torch::equal(rwkv::test::tensor_named(back.optimizer, name), m));
  CHECK(back.config_yaml == c.config_yaml);
  torch::manual_seed(1);
  restore_rng(back);
  CHECK(torch::equal(torch::rand({5}), expected_draw));
}

TEST_CASE("the non-finite guard skips a poisoned step and stops after nan_skip_limit in a row", "[train]") {
  rwkv::test::TempDir dir("rwkv-nan");
  auto cfg = parse_run_config(tt::config_yaml(dir.path().string()), "test.yaml", {parse_override("train.max_steps=5")});
  auto env = tt::make_env(cfg);
  NamedTensors before_poison, after_poison;
  auto c = tt::quiet();
  int warnings = 0;
  c.warn = [&](const std::string& w) {
    ++warnings;
    CHECK_THAT(w, Catch::Contains("step 3: non-finite gradient"));
  };
  c.after_backward = [&](const TrainProgress& p, const NamedTensors& params) {
    if (p.step == 2) {
      before_poison = snapshot(*env.model);
      params.front().tensor.mutable_grad().view(-1)[0] = std::numeric_limits<float>::infinity();
    }
    if (p.step == 3) after_poison = snapshot(*env.model);
  };
  const auto r = run_training(cfg, env, c);
  CHECK(warnings == 1);
  CHECK(r.progress.skipped_total == 1);
  CHECK(r.progress.skipped_in_row == 0);
  CHECK(r.progress.adam_steps == 4);
  CHECK(std::isnan(r.losses[2]));
  CHECK(std::isfinite(r.losses[3]));
  CHECK(same_weights(before_poison, after_poison));  // the poisoned step never reached the weights

  // every step poisoned: stop at the limit, with a checkpoint of the untouched initial weights
  rwkv::test::TempDir dir2("rwkv-nan-stop");
  auto cfg2 = parse_run_config(tt::config_yaml(dir2.path().string()), "test.yaml", {parse_override("train.nan_skip_limit=3")});
  auto env2 = tt::make_env(cfg2);
  const auto initial = snapshot(*env2.model);
  auto c2 = tt::quiet();
  c2.warn = [](const std::string&) {};
  c2.after_backward = [](const TrainProgress&, const NamedTensors& params) {
    params.back().tensor.mutable_grad().view(-1)[1] = std::nanf("");
  };
  CHECK_THROWS_WITH(run_training(cfg2, env2, c2),
                    Catch::Contains("3 non-finite steps in a row (train.nan_skip_limit) at step 3"));
  const auto latest = load_latest_checkpoint(dir2.path() / "checkpoints", [](const std::string&) {});
  REQUIRE(latest);
  CHECK(latest->second.progress.skipped_in_row == 3);
  CHECK(same_weights(latest->second.weights, initial));
}

TEST_CASE("loss falls to the entropy floor of a Markov source of known entropy", "[train]") {
  rwkv::test::TempDir dir("rwkv-floor");
  const auto cfg = parse_run_config(tt::config_yaml(dir.path().string()), "test.yaml",
                                    {parse_override("train.epoch_count=40"), parse_override("optimizer.lr_init=3.0e-2"),
                                     parse_override("train.micro_batch=8")});
  auto env = tt::make_env(cfg, /*branches=*/3);
  const auto r = run_training(cfg, env, tt::quiet());
  REQUIRE(r.losses.size() == 200);
  const double floor = std::log(3.0);
  double tail = 0;
  for (size_t i = r.losses.size() - 15; i < r.losses.size(); ++i) tail += r.losses[i] / 15;
  std::string curve;
  for (size_t i = 0; i < r.losses.size(); i += 20) curve += std::to_string(r.losses[i]) + " ";
  INFO("every 20th loss: " << curve);
  INFO("first loss " << r.losses.front() << ", mean of the last 15 " << tail << ", floor " << floor);
  CHECK(r.losses.front() > std::log(16.0) - 0.2);  // starts near uniform over V = 16
  CHECK(tail < floor + 0.05);
  CHECK(tail > floor - 0.05);                       // and cannot beat the source's entropy
}
