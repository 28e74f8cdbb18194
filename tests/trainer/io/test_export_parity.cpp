// [io] `rwkv export` from trainer checkpoints, and our own model checked against the real
// clients on the exports: transformers' RwkvForCausalLM (hf folder) and the `rwkv` package (.pth)
// give the logits our forward gives, and transformers' autograd gives our gradients. For a
// random model with non-trivial weights and for a briefly trained one.
#include <fstream>
#include <functional>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "rwkv/hf_naming.h"
#include "tests/support/test_random_weights.h"
#include "tests/support/test_tiny_run.h"
#include "tests/support/test_util.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/io/hf_folder.h"
#include "trainer/checkpoint/model_source.h"
#include "trainer/io/pth_reader.h"
#include "trainer/io/pth_writer.h"
#include "trainer/io/safetensors_file.h"

namespace {

namespace fs = std::filesystem;
using rwkv::NamedTensors;
using rwkv::test::run;
using rwkv::test::TempDir;

// Runs `rwkv ARGS`, requiring the exit status `ok` says; returns the output.
std::string cli(const std::string& args, bool ok = true) {
  std::string out;
  const int rc = run(rwkv::test::rwkv_binary().string() + " " + args, &out);
  INFO("rwkv " << args << "\n" << out);
  if (ok) REQUIRE(rc == 0);
  else REQUIRE(rc != 0);
  return out;
}

void require_bit_exact(const NamedTensors& got, const NamedTensors& want, torch::ScalarType dtype,
                       const std::string& label) {
  REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : got) {
    INFO(label << ": " << name);
    CHECK(t.scalar_type() == dtype);
    CHECK(torch::equal(t, rwkv::test::tensor_named(want, name).to(dtype)));
  }
}

torch::Tensor to_tensor(const nlohmann::json& rows) {
  const auto v = rows.get<std::vector<std::vector<double>>>();
  torch::Tensor t = torch::empty({static_cast<int64_t>(v.size()), static_cast<int64_t>(v[0].size())}, torch::kFloat64);
  for (size_t i = 0; i < v.size(); ++i) t[static_cast<int64_t>(i)] = torch::tensor(v[i], torch::kFloat64);
  return t;
}

void flip_byte(const fs::path& file, std::streamoff at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  const char c = static_cast<char>(f.get());
  f.seekp(at);
  f.put(static_cast<char>(~c));
}

std::string join_ids(const std::vector<int64_t>& ids) { return fmt::format("{}", fmt::join(ids, ",")); }

}  // namespace

TEST_CASE("rwkv export takes a trainer checkpoint; its pth and hf exports import back bit-exactly", "[io]") {
  const auto& tiny = rwkv::test::tiny_trained_run();
  const rwkv::trainer::Checkpoint ck = rwkv::trainer::load_checkpoint(tiny.checkpoint);
  TempDir dir("rwkv-export-ckpt");
  // A checkpoints directory whose newest step is torn: export warns and takes the complete one.
  const fs::path ckpts = dir / "checkpoints";
  fs::create_directories(ckpts / "step-99999999");
  std::ofstream(ckpts / "step-99999999" / "weights.pt") << "torn";
  fs::copy(tiny.checkpoint, ckpts / tiny.checkpoint.filename());

  std::string out = cli(fmt::format("export {} --format pth --dtype fp32 --out {}", ckpts.string(), (dir / "a.pth").string()));
  CHECK_THAT(out, Catch::Contains("warning:") && Catch::Contains("step-99999999") &&
                      Catch::Contains(tiny.checkpoint.filename().string()));
  require_bit_exact(rwkv::io::read_pth(dir / "a.pth"), ck.weights, torch::kFloat32, "pth from a checkpoints dir");

  cli(fmt::format("export {} --format hf --dtype fp32 --out {}", tiny.checkpoint.string(), (dir / "hf").string()));
  require_bit_exact(rwkv::io::read_hf_folder(dir / "hf"), ck.weights, torch::kFloat32, "hf from a step dir");
  std::ifstream config_json(dir / "hf" / "config.json");
  CHECK(nlohmann::json::parse(config_json).at("context_length") == 16);  // the run's ctx_len

  cli(fmt::format("export {} --format pth --dtype bf16 --out {}", tiny.run_dir.string(), (dir / "b.pth").string()));
  require_bit_exact(rwkv::io::read_pth(dir / "b.pth"), ck.weights, torch::kBFloat16, "bf16 pth from a run dir");

  // Import back (HF folder → .pth checked against the run's own config): the training weights.
  std::ofstream(dir / "model.yaml") << "model: {n_layer: 2, n_embd: 32, vocab_size: 256}\n";
  cli(fmt::format("import {} --config {} --out {}", (dir / "hf").string(), (dir / "model.yaml").string(),
                  (dir / "back.pth").string()));
  require_bit_exact(rwkv::io::read_pth(dir / "back.pth"), ck.weights, torch::kFloat32, "imported back");

  SECTION("a corrupt checkpoint is refused naming the file, nothing written") {
    fs::copy(tiny.checkpoint, dir / "bad");
    flip_byte(dir / "bad" / "shard-00000-of-00001.safetensors", 200);
    out = cli(fmt::format("export {} --format hf --out {}", (dir / "bad").string(), (dir / "bad-hf").string()), false);
    CHECK_THAT(out, Catch::Contains("shard-00000-of-00001.safetensors") && Catch::Contains("corrupt"));
    CHECK_FALSE(fs::exists(dir / "bad-hf"));
  }
  SECTION("weights that do not fit the checkpoint's own config are refused naming the tensor") {
    rwkv::trainer::Checkpoint wide = ck;
    const auto at = wide.config_yaml.find("n_embd: 32");
    REQUIRE(at != std::string::npos);
    wide.config_yaml.replace(at, 10, "n_embd: 48");
    const fs::path saved = rwkv::trainer::save_checkpoint(dir / "wide", wide, 1);
    out = cli(fmt::format("export {} --out {}", saved.string(), (dir / "wide.pth").string()), false);
    CHECK_THAT(out, Catch::Contains("'emb.weight' has shape (256, 32), expected (256, 48)") &&
                        Catch::Contains("config.yaml"));
    CHECK_FALSE(fs::exists(dir / "wide.pth"));
  }
}

TEST_CASE("a weights-only checkpoint read still checks every file and keeps no optimizer state", "[io]") {
  const auto& tiny = rwkv::test::tiny_trained_run();
  const auto full = rwkv::trainer::load_checkpoint(tiny.checkpoint);
  const auto light = rwkv::trainer::load_checkpoint(tiny.checkpoint, rwkv::trainer::CheckpointParts::weights);
  CHECK(light.optimizer.empty());
  CHECK_FALSE(light.cpu_rng.defined());
  CHECK(light.progress == full.progress);
  CHECK(light.config_yaml == full.config_yaml);
  REQUIRE(light.weights.size() == full.weights.size());
  for (const auto& [name, t] : full.weights) CHECK(torch::equal(rwkv::test::tensor_named(light.weights, name), t));

  TempDir dir("rwkv-ckpt-parts");
  fs::copy(tiny.checkpoint, dir / "ck");
  // A byte far from the weights (the shard file ends with the RNG states).
  flip_byte(dir / "ck" / "shard-00000-of-00001.safetensors", static_cast<int64_t>(fs::file_size(dir / "ck" / "shard-00000-of-00001.safetensors")) - 64);
  CHECK_THROWS_WITH(rwkv::trainer::load_checkpoint(dir / "ck", rwkv::trainer::CheckpointParts::weights),
                    Catch::Contains("shard-00000-of-00001.safetensors does not match its hash"));
}

TEST_CASE("our logits and gradients equal transformers' and the rwkv package's on our exports",
          "[io][interop]") {
  TempDir dir("rwkv-parity");
  // Case 1: random non-trivial weights, F ≠ 4D. Case 2: the briefly trained model, exported by the CLI.
  rwkv::ModelConfig c;
  c.n_layer = 3;
  c.n_embd = 32;
  c.vocab_size = 128;
  c.dim_ffn = 80;
  const rwkv::io::ModelWeights random{c, rwkv::test::random_model(c, 21)};
  rwkv::io::write_pth(dir / "random.pth", random.tensors, torch::kFloat32);
  rwkv::io::write_hf_folder(dir / "random-hf", random.tensors, c, 64, torch::kFloat32);
  const auto& tiny = rwkv::test::tiny_trained_run();
  const rwkv::io::ModelWeights trained = rwkv::io::read_model_source(tiny.checkpoint, {}).weights;
  cli(fmt::format("export {} --format pth --dtype fp32 --out {}", tiny.checkpoint.string(), (dir / "trained.pth").string()));
  cli(fmt::format("export {} --format hf --dtype fp32 --out {}", tiny.checkpoint.string(), (dir / "trained-hf").string()));

  // Tokens valid for both vocabularies (ASCII < 128): bytes of text the trained model has seen.
  std::vector<int64_t> tokens;
  for (const char ch : std::string("the quick brown fox 7 jumps")) tokens.push_back(ch);
  const std::vector<std::vector<int64_t>> batch = {
      {'t', 'h', 'e', ' ', 'l', 'a', 'z', 'y', ' ', 'd', 'o', 'g', '.', '\n', 't', 'h', 'e'},
      {'o', 'v', 'e', 'r', ' ', '1', '2', ' ', 'j', 'u', 'm', 'p', 's', ' ', 'o', 'v', 'e'}};
  const std::string script = (rwkv::test::source_dir() / "tests/interop/weights_interop.py").string();
  std::string out;
  const int rc = run(fmt::format("{} {} parity {} --case random {} {} --case trained {} {} --tokens {} --grad-tokens '{};{}'",
                                 rwkv::test::python(), script, (dir / "parity.json").string(),
                                 (dir / "random-hf").string(), (dir / "random.pth").string(),
                                 (dir / "trained-hf").string(), (dir / "trained.pth").string(), join_ids(tokens),
                                 join_ids(batch[0]), join_ids(batch[1])),
                     &out);
  INFO(out);
  REQUIRE(rc == 0);
  std::ifstream f(dir / "parity.json");
  const nlohmann::json result = nlohmann::json::parse(f);

  for (const auto& [name, weights] : {std::pair{"random", &random}, std::pair{"trained", &trained}}) {
    INFO(name << " model");
    const nlohmann::json& r = result.at(name);
    rwkv::RWKV model = rwkv::io::build_model(*weights, torch::TensorOptions().dtype(torch::kFloat32));

    torch::Tensor ours;
    {
      torch::NoGradGuard no_grad;
      ours = model->forward(torch::tensor(tokens, torch::kLong).unsqueeze(0))[0].to(torch::kFloat64);
    }
    std::string measured;
    for (const char* client : {"hf_logits", "rwkv_logits"}) {
      const torch::Tensor theirs = to_tensor(r.at(client));
      REQUIRE(theirs.sizes() == ours.sizes());
      const double diff = (theirs - ours).abs().max().item<double>();
      INFO(client << ": max |ours - theirs| = " << diff << " (logit std " << ours.std().item<double>() << ")");
      CHECK(diff <= 1e-4);
      measured += fmt::format("{} max |diff| {:.2e}; ", client, diff);
    }
    CHECK(ours.std().item<double>() > 0.1);  // the weights really shape the output

    // Gradients of the mean next-token cross-entropy (no L2Wrap) on the same batch.
    model->train();
    const torch::Tensor b = torch::tensor(batch[0], torch::kLong).unsqueeze(0).repeat({2, 1});
    b[1].copy_(torch::tensor(batch[1], torch::kLong));
    const int64_t T = b.size(1) - 1;
    const torch::Tensor logits = model->forward(b.narrow(1, 0, T));
    const torch::Tensor loss = torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), b.narrow(1, 1, T).reshape(-1));
    loss.backward();
    CHECK(std::abs(loss.item<double>() - r.at("loss").get<double>()) <= 1e-5);
    std::map<std::string, torch::Tensor> grads;
    for (const auto& p : model->named_parameters()) grads[p.key()] = p.value().grad().to(torch::kFloat64).flatten();
    REQUIRE(r.at("grads").size() == grads.size());
    double worst = 0;
    for (const auto& [hf_name, values] : r.at("grads").items()) {
      const std::string ref = rwkv::hf_to_reference_name(hf_name);
      INFO(hf_name << " = " << ref);
      REQUIRE(grads.count(ref) == 1);
      const torch::Tensor theirs = torch::tensor(values.get<std::vector<double>>(), torch::kFloat64);
      REQUIRE(theirs.numel() == grads[ref].numel());
      // fp32 on both sides, different summation orders: agree to 1e-5 of the tensor's largest entry
      // (measured: under 1e-6).
      const double scale = theirs.abs().max().item<double>();
      const double diff = (theirs - grads[ref]).abs().max().item<double>();
      INFO("max |ours - transformers| = " << diff << ", largest gradient entry " << scale);
      CHECK(diff <= 1e-5 * scale + 1e-8);
      CHECK(scale > 0);
      worst = std::max(worst, diff / (scale + 1e-30));
    }
    WARN(name << ": " << measured << "gradients max |diff| / max |grad| " << worst);
  }
}

TEST_CASE("HF folders that do not fit are refused naming the file and the tensor or field; nothing written",
          "[io]") {
  TempDir dir("rwkv-hf-bad");
  rwkv::ModelConfig c;
  c.n_layer = 2;
  c.n_embd = 16;
  c.vocab_size = 40;
  const NamedTensors model = rwkv::test::random_model(c, 4);
  // An HF folder from our writer, then one defect at a time; each import must fail and write nothing.
  const auto folder_with = [&](const std::string& name, const std::function<void(NamedTensors&)>& edit_tensors,
                               const std::function<void(nlohmann::json&)>& edit_config) {
    const fs::path f = dir / name;
    rwkv::io::write_hf_folder(f, model, c, 64, torch::kFloat32);
    NamedTensors hf;
    for (const auto& [n, t] : model) hf.push_back({rwkv::reference_to_hf_name(n), t});
    edit_tensors(hf);
    rwkv::io::write_safetensors(f / "model.safetensors", hf, torch::kFloat32);
    std::ifstream in(f / "config.json");
    nlohmann::json cfg = nlohmann::json::parse(in);
    in.close();
    edit_config(cfg);
    std::ofstream(f / "config.json") << cfg.dump(2);
    return f;
  };
  const auto refused = [&](const fs::path& folder) {
    const std::string out = cli(fmt::format("import {} --out {}", folder.string(), (dir / "out.pth").string()), false);
    CHECK_FALSE(fs::exists(dir / "out.pth"));
    return out;
  };
  const auto no_edit = [](auto&) {};

  CHECK_THAT(refused(folder_with("size", no_edit, [](nlohmann::json& j) { j["hidden_size"] = 24; })),
             Catch::Contains("config.json: hidden_size is 24 but the weights have 16"));
  CHECK_THAT(refused(folder_with("type", no_edit, [](nlohmann::json& j) { j["model_type"] = "gpt2"; })),
             Catch::Contains("config.json: model_type is \"gpt2\", expected \"rwkv\""));
  CHECK_THAT(refused(folder_with("nohead", [](NamedTensors& t) { t.pop_back(); }, no_edit)),
             Catch::Contains("model.safetensors") && Catch::Contains("'head.weight'"));
  CHECK_THAT(refused(folder_with("shape", [](NamedTensors& t) {
                       for (auto& [n, x] : t)
                         if (n == "rwkv.blocks.1.attention.key.weight") x = torch::zeros({16, 12});
                     }, no_edit)),
             Catch::Contains("'blocks.1.att.key.weight' has shape (16, 12), expected (16, 16)"));
  CHECK_THAT(refused(folder_with("extra", [](NamedTensors& t) { t.push_back({"rwkv.blocks.0.attention.gate", torch::zeros({16})}); },
                                 no_edit)),
             Catch::Contains("model.safetensors") && Catch::Contains("rwkv.blocks.0.attention.gate"));
  const fs::path cut = folder_with("cut", no_edit, [](auto&) {});
  fs::resize_file(cut / "model.safetensors", fs::file_size(cut / "model.safetensors") - 64);
  CHECK_THAT(refused(cut), Catch::Contains("model.safetensors: tensor 'head.weight'") && Catch::Contains("truncated"));
}
