// Segmented training (trainer/train/segments.h): the exact mode's loss and gradients against the
// whole sample at once, on the real RWKV with L2Wrap, with and without activation checkpointing;
// truncated mode against its own definition (independent segments from detached states); whole
// runs, resume and the config rules.
#include <catch2/catch.hpp>

#include <fstream>

#include <fmt/format.h>
#include <iterator>

#include "rwkv/rnn.h"
#include "trainer/bench/cpu_memory_meter.h"
#include "trainer/config/yaml_section.h"
#include "trainer/dist/communicator.h"
#include "trainer/train/segments.h"
#include "trainer/train/train_step.h"
#include "trainer/train/trained_model.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"

using namespace rwkv::trainer;
using rwkv::NamedTensors;
namespace tt = rwkv::test::trainer;

namespace {

// 2 layers, D 32, ctx 24 (segments of 6 = T/4 and 8 = T/3 divide it; 7 and 10 do not).
RunConfig small_config(const std::string& run_dir, const std::vector<Override>& extra = {}) {
  std::vector<Override> o{parse_override("model.n_layer=2"), parse_override("data.ctx_len=24"),
                          parse_override("train.micro_batch=3"), parse_override("train.epoch_samples=30"),
                          parse_override("log.every_steps=100")};
  o.insert(o.end(), extra.begin(), extra.end());
  return parse_run_config(tt::config_yaml(run_dir), "test.yaml", o);
}

struct Grads {
  double loss = 0;
  NamedTensors grads;
};

// The model as `rwkv train` builds it, every weight then moved by the same noise: the recipe's
// zero-initialised output projections would leave most gradients zero at step 0.
TrainedModel perturbed_model(const RunConfig& cfg) {
  TrainedModel m = build_trained_model(cfg, torch::kCPU);
  torch::manual_seed(11);
  torch::NoGradGuard no_grad;
  for (auto& p : m.model->parameters()) p.add_(torch::randn_like(p) * 0.3);
  return m;
}

// One micro-batch's loss and gradients through TrainStep::forward_backward, as training runs it.
Grads step_grads(const RunConfig& cfg, int64_t segment_len, const torch::Tensor& tokens) {
  rwkv::Communicator alone(rwkv::DistEnv{}, torch::kCPU, std::chrono::seconds(1));
  TrainedModel m = perturbed_model(cfg);
  TrainStep step(cfg, rwkv::named_parameters(*m.model), m.forward, alone, torch::kCPU);
  Stage stage = cfg.stages.at(0);
  stage.segment_len = segment_len;
  Grads out;
  out.loss = step.forward_backward(tokens, stage, 1, true, {}).item<double>();
  for (const auto& [name, p] : step.params()) out.grads.push_back({name, p.grad().clone()});
  return out;
}

// max |a − b| / max |b| over each parameter's gradient: the worst one.
double worst_relative(const NamedTensors& a, const NamedTensors& b, std::string* where) {
  double worst = 0;
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].name == b[i].name);
    const double scale = b[i].tensor.abs().max().item<double>();
    INFO(b[i].name);
    REQUIRE(scale > 0);  // every parameter is reached
    const double e = (a[i].tensor - b[i].tensor).abs().max().item<double>() / scale;
    if (e > worst) {
      worst = e;
      *where = a[i].name;
    }
  }
  return worst;
}

torch::Tensor tokens_for(const RunConfig& cfg) { return tt::MarkovSource(16, 5, cfg.stages[0].ctx_len).samples(7, 3); }

}  // namespace

TEST_CASE("segment bounds cover the sample once, the last segment shorter", "[train]") {
  using B = std::vector<std::pair<int64_t, int64_t>>;
  CHECK(segment_bounds(24, 6) == B{{0, 6}, {6, 12}, {12, 18}, {18, 24}});
  CHECK(segment_bounds(24, 10) == B{{0, 10}, {10, 20}, {20, 24}});
  CHECK(segment_bounds(5, 8) == B{{0, 5}});
  CHECK_THROWS_WITH(segment_bounds(5, 0), Catch::Contains("segment_len 0"));
}

TEST_CASE("exact segments give the whole sample's loss and every gradient (T/4, T/3, uneven)", "[train]") {
  const tt::OneThread one_thread;
  for (const bool recompute : {false, true}) {
    rwkv::test::TempDir dir("rwkv-seg-grads");
    const RunConfig cfg =
        small_config(dir.path().string(), {parse_override(std::string("train.activation_checkpointing=") + (recompute ? "true" : "false"))});
    const auto tokens = tokens_for(cfg);
    const Grads whole = step_grads(cfg, 0, tokens);
    for (const int64_t seg : {6, 8, 7, 10, 1}) {
      INFO("segment_len " << seg << ", activation checkpointing " << recompute);
      const Grads got = step_grads(cfg, seg, tokens);
      std::string where;
      const double e = worst_relative(got.grads, whole.grads, &where);
      CAPTURE(where, e);
      CHECK(std::abs(got.loss - whole.loss) <= 1e-6 * whole.loss);
      CHECK(e <= 1e-5);
      fmt::print("segments of {} (activation checkpointing {}): loss rel {:.2g}, worst gradient rel {:.2g} ({})\n", seg,
                 recompute ? "on" : "off", std::abs(got.loss - whole.loss) / whole.loss, e, where);
    }
  }
}

TEST_CASE("memory of a step in segments: ctx 16384 in segments of 1024 stays at ctx 1024's peak", "[train]") {
  const tt::OneThread one_thread;
  rwkv::test::TempDir dir("rwkv-seg-memory");
  const RunConfig cfg = small_config(dir.path().string(), {parse_override("data.ctx_len=16384"),
                                                           parse_override("train.micro_batch=1")});
  rwkv::Communicator alone(rwkv::DistEnv{}, torch::kCPU, std::chrono::seconds(1));
  TrainedModel m = build_trained_model(cfg, torch::kCPU);
  TrainStep step(cfg, rwkv::named_parameters(*m.model), m.forward, alone, torch::kCPU);
  const auto peak_of = [&](int64_t ctx, int64_t segment) {
    Stage stage = cfg.stages[0];
    stage.ctx_len = ctx;
    stage.segment_len = segment;
    const auto tokens = tt::MarkovSource(16, 5, ctx).samples(0, 1);
    for (const auto& [name, p] : step.params()) p.mutable_grad() = torch::Tensor();
    // The gradients (as large as the weights) exist after either step: measured on top.
    CpuMemoryMeter meter;
    step.forward_backward(tokens, stage, 1, true, {});
    return meter.peak();
  };
  const int64_t short_peak = peak_of(1024, 0), long_whole = peak_of(16384, 0), long_seg = peak_of(16384, 1024);
  // 15 boundary states: 2 blocks × 5 vectors of 32 fp32 numbers each.
  const double boundaries = 15.0 * 2 * 5 * 32 * 4;
  CAPTURE(short_peak, long_whole, long_seg);
  fmt::print("peak tensor memory of a step: ctx 1024 {:.2f} MiB, ctx 16384 whole {:.2f} MiB, in segments of 1024 {:.2f} MiB\n",
             short_peak / 1048576.0, long_whole / 1048576.0, long_seg / 1048576.0);
  CHECK(long_seg <= 1.2 * short_peak + boundaries);
  CHECK(long_whole >= 10 * short_peak);  // what the segments avoid: ~16x
}

TEST_CASE("truncated segments are independent segments from detached states, and differ from exact", "[train]") {
  const tt::OneThread one_thread;
  rwkv::test::TempDir dir("rwkv-seg-trunc");
  // L2Wrap off: the reference below is plain cross-entropy.
  const RunConfig cfg =
      small_config(dir.path().string(), {parse_override("train.segment_grad=truncated"), parse_override("optimizer.l2wrap=0")});
  const auto tokens = tokens_for(cfg);
  const Grads got = step_grads(cfg, 10, tokens);

  // The definition, from the same initial weights: each segment continues from the previous
  // one's end state detached, its mean cross-entropy weighted by its share of the sample.
  TrainedModel m = perturbed_model(cfg);
  rwkv::RnnState state = rwkv::initial_state(cfg.model, 3, torch::kFloat32);
  const auto inputs = tokens.narrow(1, 0, 24), targets = tokens.narrow(1, 1, 24);
  double loss = 0;
  for (const auto& [b, e] : segment_bounds(24, 10)) {
    for (auto& layer : state) {
      layer.att.prev_x = layer.att.prev_x.detach();
      layer.att.wkv = rwkv::WkvState{layer.att.wkv.aa.detach(), layer.att.wkv.bb.detach(), layer.att.wkv.pp.detach()};
      layer.ffn.prev_x = layer.ffn.prev_x.detach();
    }
    const auto logits = m.model->forward(inputs.narrow(1, b, e - b), state);
    const auto ce =
        torch::nn::functional::cross_entropy(logits.reshape({-1, 16}), targets.narrow(1, b, e - b).reshape({-1}));
    const double share = static_cast<double>(e - b) / 24;
    (ce * share).backward();
    loss += ce.item<double>() * share;
  }
  NamedTensors expected;
  for (const auto& kv : m.model->named_parameters()) expected.push_back({kv.key(), kv.value().grad()});
  std::string where;
  const double e = worst_relative(got.grads, expected, &where);
  CAPTURE(where, e);
  CHECK(e <= 1e-6);
  CHECK(std::abs(got.loss - loss) <= 1e-6 * loss);

  // The loss is the same function of the weights either way; the gradient is not.
  RunConfig exact_cfg = cfg;
  exact_cfg.train.segment_grad = SegmentGrad::exact;
  const Grads exact = step_grads(exact_cfg, 10, tokens);
  CHECK(std::abs(exact.loss - got.loss) <= 1e-6 * loss);
  CHECK(worst_relative(got.grads, exact.grads, &where) > 1e-3);
}

namespace {

// Two stages (ctx 24 → 48) of 10 steps each, grad_accum 2, checkpoints every 4 steps.
RunConfig staged(const std::string& run_dir, const std::string& segments) {
  return parse_run_config(tt::config_yaml(run_dir) + "stages:\n  - {ctx_len: 24, steps: 10" + segments +
                              "}\n  - {ctx_len: 48, steps: 10, lr_init: 5.0e-3" + segments + "}\n",
                          "test.yaml",
                          {parse_override("model.n_layer=2"), parse_override("train.micro_batch=2"),
                           parse_override("train.grad_accum=2"), parse_override("checkpoint.every_steps=4"),
                           parse_override("log.every_steps=100")});
}

}  // namespace

TEST_CASE("a 20-step run in segments follows the unsegmented run; resume in segments is bit-exact", "[train]") {
  const tt::OneThread one_thread;
  rwkv::test::TempDir dir("rwkv-seg-run");
  const auto run = [&](const RunConfig& cfg, const TrainControls& controls) {
    auto env = tt::make_rwkv_env(cfg);
    return run_training(cfg, env, controls);
  };
  const auto whole = run(staged(dir.path().string() + "/whole", ""), tt::quiet());
  const auto seg = run(staged(dir.path().string() + "/seg", ", segment_len: 7"), tt::quiet());
  REQUIRE(whole.losses.size() == 20);
  REQUIRE(seg.losses.size() == 20);
  CHECK(whole.losses.back() < whole.losses.front());
  for (size_t i = 0; i < 20; ++i) {
    INFO("step " << i);
    // Rounding differences compound through 20 Adam steps; still far below the loss's own change.
    CHECK(std::abs(seg.losses[i] - whole.losses[i]) <= 1e-4 * whole.losses[i]);
  }

  // Stopped before step 7 and again mid-accumulation in the second stage, then resumed.
  const RunConfig cut_cfg = staged(dir.path().string() + "/cut", ", segment_len: 7");
  std::vector<double> losses;
  for (const auto& [at, micro] : std::vector<std::pair<int64_t, int64_t>>{{6, 0}, {13, 1}, {-1, 0}}) {
    TrainControls c = tt::quiet();
    if (at >= 0)
      c.stop_before = [at = at, micro = micro](const TrainProgress& p, int64_t m) { return p.step == at && m == micro; };
    const auto r = run(cut_cfg, c);
    losses.insert(losses.end(), r.losses.begin(), r.losses.end());
  }
  CHECK(losses == seg.losses);
}

TEST_CASE("segment config: per stage, inherited, validated; truncated segments may not move on resume", "[train][config]") {
  rwkv::test::TempDir dir("rwkv-seg-config");
  const RunConfig cfg = staged(dir.path().string(), "");
  CHECK(cfg.stages[0].segment() == 24);
  const RunConfig inherited = parse_run_config(
      tt::config_yaml(dir.path().string()) + "stages:\n  - {ctx_len: 24, steps: 10}\n  - {ctx_len: 48, steps: 10, segment_len: 12}\n",
      "test.yaml", {parse_override("train.segment_len=16")});
  CHECK(inherited.stages[0].segment() == 16);
  CHECK(inherited.stages[1].segment() == 12);
  // Reading the saved config back gives the same stages.
  const RunConfig again = parse_run_config(inherited.to_yaml(), "saved.yaml");
  CHECK(again.stages[1].segment_len == 12);
  CHECK(unsafe_resume_change(inherited, again).empty());

  CHECK_THROWS_WITH(parse_run_config(tt::config_yaml(dir.path().string()), "t.yaml", {parse_override("train.segment_len=-1")}),
                    Catch::Contains("train.segment_len") && Catch::Contains("non-negative integer"));
  CHECK_THROWS_WITH(parse_run_config(tt::config_yaml(dir.path().string()), "t.yaml", {parse_override("train.segment_grad=some")}),
                    Catch::Contains("train.segment_grad") && Catch::Contains("exact|truncated"));

  // Exact: a new segment length keeps the run (a memory knob); truncated: it changes the gradient.
  const RunConfig smaller = parse_run_config(tt::config_yaml(dir.path().string()), "t.yaml", {parse_override("train.segment_len=4")});
  const RunConfig base = parse_run_config(tt::config_yaml(dir.path().string()), "t.yaml");
  CHECK(unsafe_resume_change(base, smaller).empty());
  const auto trunc = [&](const char* len) {
    return parse_run_config(tt::config_yaml(dir.path().string()), "t.yaml",
                            {parse_override("train.segment_grad=truncated"), parse_override(std::string("train.segment_len=") + len)});
  };
  CHECK(unsafe_resume_change(trunc("4"), trunc("4")).empty());
  CHECK_THAT(unsafe_resume_change(trunc("4"), trunc("2")), Catch::Contains("segment length"));
  CHECK_THAT(unsafe_resume_change(base, trunc("0")), Catch::Contains("train.segment_grad"));
}

TEST_CASE("a model without RNN state refuses segments by name", "[train]") {
  rwkv::test::TempDir dir("rwkv-seg-bigram");
  const RunConfig cfg = parse_run_config(tt::config_yaml(dir.path().string()), "t.yaml", {parse_override("train.segment_len=4")});
  auto env = tt::make_env(cfg);
  CHECK_THROWS_WITH(run_training(cfg, env, tt::quiet()), Catch::Contains("train.segment_len") &&
                                                             Catch::Contains("no RNN state"));
}

TEST_CASE("the 169M config's commented 16k and 32k stages parse and run in segments of 4096", "[train][config]") {
  std::ifstream in(rwkv::test::source_dir() / "configs/rwkv4-169m.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* stage : {"  # - {ctx_len: 16384", "  # - {ctx_len: 32768"}) {
    const auto at = text.find(stage);
    REQUIRE(at != std::string::npos);
    text.erase(at + 2, 2);  // "  - {ctx_len: …"
  }
  const RunConfig cfg = parse_run_config(text, "rwkv4-169m.yaml");
  REQUIRE(cfg.stages.size() == 6);
  CHECK(cfg.stages[4].ctx_len == 16384);
  CHECK(cfg.stages[4].segment() == 4096);
  CHECK(cfg.stages[5].segment() == 4096);
  CHECK(cfg.stages[5].global_batch() * cfg.stages[5].ctx_len == cfg.stages[3].global_batch() * cfg.stages[3].ctx_len);
  CHECK(cfg.stages[3].segment() == 8192);  // the paper's stages stay whole
}
