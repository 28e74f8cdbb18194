// checkpoint.init_from with a .pth, an HF folder, safetensors or a checkpoint (paper §5.2: a new run, e.g. at a longer context, starts from
// another run's or a released model's weights): the second run's initial weights are the file's
// bit-exactly, its first loss is the source model's loss on that batch, bf16 files (as released)
// load as their exact fp32 values, and a file of another shape is refused naming the tensor.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <fstream>

#include "rwkv/model.h"
#include "rwkv/reference_layout.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/init_weights_file.h"
#include "trainer/io/pth_writer.h"
#include "trainer/train/cross_entropy_l2wrap.h"
#include "trainer/io/weight_files.h"

using namespace rwkv::trainer;
using rwkv::NamedTensors;
namespace tt = rwkv::test::trainer;
namespace fs = std::filesystem;

namespace {

// A real RWKV (L = 2, D = 32, V = 16) on the Markov source.
RunConfig rwkv_config(const fs::path& run_dir, std::vector<Override> sets = {}) {
  sets.insert(sets.begin(), {parse_override("model.n_layer=2"), parse_override("train.max_steps=6")});
  return parse_run_config(tt::config_yaml(run_dir.string()), "test.yaml", sets);
}

// The weights as `rwkv export` writes them: reference keys in reference order.
void write_weights_pth(const fs::path& path, const rwkv::ModelConfig& model,
                       const rwkv::NamedTensors& weights, torch::ScalarType dtype) {
  rwkv::NamedTensors tensors;
  for (const auto& t : rwkv::reference_layout(model)) tensors.push_back({t.name, rwkv::test::tensor_named(weights, t.name)});
  rwkv::io::write_pth(path, tensors, dtype);
}

}  // namespace

TEST_CASE("init_from a .pth starts the run from its weights bit-exactly, at another ctx_len", "[train]") {
  rwkv::test::TempDir dir("rwkv-init-from");
  const tt::OneThread one_thread;
  const RunConfig src_cfg = rwkv_config(dir / "src");
  auto src = tt::make_rwkv_env(src_cfg);
  const auto r1 = run_training(src_cfg, src, tt::quiet());
  REQUIRE(r1.losses.size() == 6);
  const Checkpoint ck = load_checkpoint(r1.checkpoint);
  const fs::path pth = dir / "src.pth";
  write_weights_pth(pth, src_cfg.model, ck.weights, torch::kFloat32);

  // Another seed (different random init), ctx_len 24 instead of 8, one step.
  const RunConfig cfg = rwkv_config(dir / "dst", {parse_override("train.seed=7"), parse_override("data.ctx_len=24"),
                                                  parse_override("train.max_steps=1"),
                                                  parse_override("checkpoint.init_from=" + pth.string())});
  auto env = tt::make_rwkv_env(cfg);
  rwkv::NamedTensors initial;
  TrainControls c = tt::quiet();
  std::string printed;
  c.print = [&](const std::string& s) { printed += s + "\n"; };
  // After the first backward the optimizer has not stepped yet: the parameters are the initial ones.
  c.after_backward = [&](const TrainProgress& p, const NamedTensors& params) {
    if (p.step == 0)
      for (const auto& [name, t] : params) initial.push_back({name, t.detach().clone()});
  };
  const auto r2 = run_training(cfg, env, c);
  CHECK_THAT(printed, Catch::Contains("initial weights from " + pth.string()));
  REQUIRE(initial.size() == ck.weights.size());
  for (const auto& [name, t] : ck.weights) {
    INFO(name);
    CHECK(torch::equal(rwkv::test::tensor_named(initial, name), t));
  }

  // The source model's loss on the second run's first batch, computed here without the loop.
  REQUIRE(r2.losses.size() == 1);
  const auto batch = tt::MarkovSource(16, 3, 24).samples(0, cfg.stages[0].micro_batch);
  torch::NoGradGuard no_grad;
  const auto logits = src.forward.fresh(batch.narrow(1, 0, 24));
  // The training loss (its value is the plain mean cross-entropy; L2Wrap only shapes the gradient).
  const double expected = cross_entropy_l2wrap(logits, batch.narrow(1, 1, 24), 0.0).item<double>();
  CHECK(r2.losses[0] == expected);  // same weights, same ops, same thread count: bit-identical
}

TEST_CASE("init_from also reads HF folders, safetensors and other runs' checkpoints bit-exactly", "[train]") {
  rwkv::test::TempDir dir("rwkv-init-sources");
  const tt::OneThread one_thread;
  const RunConfig cfg = rwkv_config(dir / "src");
  auto env = tt::make_rwkv_env(cfg);
  const auto report = run_training(cfg, env, tt::quiet());
  const Checkpoint ck = load_checkpoint(report.checkpoint);
  rwkv::io::ModelWeights weights{cfg.model, {}};
  for (const auto& t : rwkv::reference_layout(cfg.model)) weights.tensors.push_back({t.name, rwkv::test::tensor_named(ck.weights, t.name)});
  rwkv::io::write_model_weights(weights, rwkv::io::WeightFormat::HfFolder, dir / "hf", torch::kFloat32, 8);
  rwkv::io::write_model_weights(weights, rwkv::io::WeightFormat::Safetensors, dir / "w.safetensors", torch::kFloat32, 8);
  // A torn newer checkpoint next to the complete one: skipped with a warning.
  fs::create_directories(report.checkpoint.parent_path() / "step-99999999");
  std::string warned;
  const auto warn = [&](const std::string& w) { warned += w; };
  for (const fs::path& source : {dir / "hf", dir / "w.safetensors", report.checkpoint,
                                 report.checkpoint.parent_path(), fs::path(cfg.train.run_dir)}) {
    INFO(source.string());
    const auto loaded = read_init_weights(source.string(), cfg.model, warn);
    REQUIRE(loaded.size() == ck.weights.size());
    for (const auto& [name, t] : ck.weights) {
      INFO(name);
      CHECK(torch::equal(rwkv::test::tensor_named(loaded, name), t));
    }
  }
  CHECK_THAT(warned, Catch::Contains("step-99999999"));
}

TEST_CASE("init_from reads a bf16 .pth as its exact fp32 values and refuses another shape, naming the tensor",
          "[train]") {
  rwkv::test::TempDir dir("rwkv-init-from-bf16");
  const tt::OneThread one_thread;
  const RunConfig cfg = rwkv_config(dir / "run");
  auto env = tt::make_rwkv_env(cfg);
  const rwkv::NamedTensors weights = rwkv::named_parameters(*env.model);
  write_weights_pth(dir / "bf16.pth", cfg.model, weights, torch::kBFloat16);
  const auto loaded = read_init_weights((dir / "bf16.pth").string(), cfg.model);
  REQUIRE(loaded.size() == weights.size());
  for (const auto& [name, t] : weights) {
    INFO(name);
    CHECK(rwkv::test::tensor_named(loaded, name).scalar_type() == torch::kFloat32);
    CHECK(torch::equal(rwkv::test::tensor_named(loaded, name), t.to(torch::kBFloat16).to(torch::kFloat32)));
  }

  // A model of n_embd 64 against the config's 32.
  const RunConfig wide = rwkv_config(dir / "wide", {parse_override("model.n_embd=64")});
  auto wide_env = tt::make_rwkv_env(wide);
  const rwkv::NamedTensors wide_weights = rwkv::named_parameters(*wide_env.model);
  write_weights_pth(dir / "wide.pth", wide.model, wide_weights, torch::kFloat32);
  const RunConfig mismatched = rwkv_config(dir / "run2", {parse_override("checkpoint.init_from=" + (dir / "wide.pth").string())});
  auto env2 = tt::make_rwkv_env(mismatched);
  try {
    run_training(mismatched, env2, tt::quiet());
    FAIL("a .pth of n_embd 64 was accepted for a model of n_embd 32");
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK_THAT(msg, Catch::Contains((dir / "wide.pth").string()));
    CHECK_THAT(msg, Catch::Contains("'emb.weight' has shape (16, 64), expected (16, 32)"));
  }
  CHECK_FALSE(fs::exists(dir / "run2" / "checkpoints"));  // nothing trained, nothing written
}

TEST_CASE("`rwkv train` with checkpoint.init_from: a .pth of another n_embd exits non-zero naming the tensor",
          "[train]") {
  rwkv::test::TempDir dir("rwkv-init-from-cli");
  fs::create_directories(dir / "text");
  std::ofstream(dir / "text" / "a.txt") << std::string(4000, 'a') << "\n";
  const std::string bin = rwkv::test::rwkv_binary().string();
  std::string out;
  REQUIRE(rwkv::test::run(fmt::format("{} prep {} -o {} --tokenizer byte --quiet", bin, (dir / "text").string(),
                                      (dir / "tok").string()),
                          &out) == 0);
  const rwkv::ModelConfig wide{.n_layer = 1, .n_embd = 64, .vocab_size = 256};
  rwkv::RWKV model(wide);
  rwkv::NamedTensors weights = rwkv::named_parameters(*model);
  for (auto& w : weights) w.tensor = torch::zeros_like(w.tensor);
  write_weights_pth(dir / "wide.pth", wide, weights, torch::kBFloat16);
  std::ofstream(dir / "run.yaml") << fmt::format(R"(model: {{n_layer: 1, n_embd: 32, vocab_size: 256}}
data: {{path: "{}", ctx_len: 16}}
train: {{run_dir: "{}", micro_batch: 4, epoch_samples: 40, epoch_count: 1, device: cpu, threads: 1}}
optimizer: {{lr_init: 1.0e-3}}
checkpoint: {{init_from: "{}"}}
)",
                                                 (dir / "tok").string(), (dir / "run").string(),
                                                 (dir / "wide.pth").string());
  CHECK(rwkv::test::run(fmt::format("{} train {}", bin, (dir / "run.yaml").string()), &out) != 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("'emb.weight' has shape (256, 64), expected (256, 32)"));
  CHECK_FALSE(fs::exists(dir / "run" / "checkpoints"));
}
