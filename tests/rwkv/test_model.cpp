// The RWKV-4 module tree against the reference (rwkv/README.md "Shapes", "Forward pass", "Initialisation"): state_dict names, shapes and
// order; parameter counts and FLOPs of the six configs; the initialisation rules; `rwkv info`.
#include <catch2/catch.hpp>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "rwkv/init.h"
#include "rwkv/model.h"
#include "rwkv/model_config.h"
#include "tests/support/test_util.h"
#include "trainer/config/model_config_yaml.h"

namespace {

using rwkv::ModelConfig;
using Shape = std::vector<int64_t>;

ModelConfig shape(int64_t L, int64_t D, int64_t V, int64_t A = 0, int64_t F = 0) {
  ModelConfig c;
  c.n_layer = L;
  c.n_embd = D;
  c.vocab_size = V;
  c.dim_att = A;
  c.dim_ffn = F;
  return c;
}

const torch::TensorOptions kMeta = torch::TensorOptions().device(torch::kMeta);

// The reference state_dict of rwkv/README.md "Forward pass", in the reference modules' registration order.
std::vector<std::pair<std::string, Shape>> reference_state_dict(int64_t L, int64_t D, int64_t V,
                                                                int64_t A, int64_t F) {
  std::vector<std::pair<std::string, Shape>> keys = {{"emb.weight", {V, D}}};
  for (int64_t l = 0; l < L; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* ln : {"ln1", "ln2", "ln0"}) {
      if (std::string(ln) == "ln0" && l != 0) continue;
      keys.push_back({b + ln + ".weight", {D}});
      keys.push_back({b + ln + ".bias", {D}});
    }
    keys.push_back({b + "att.time_decay", {A}});
    keys.push_back({b + "att.time_first", {A}});
    keys.push_back({b + "att.time_mix_k", {1, 1, D}});
    keys.push_back({b + "att.time_mix_v", {1, 1, D}});
    keys.push_back({b + "att.time_mix_r", {1, 1, D}});
    keys.push_back({b + "att.key.weight", {A, D}});
    keys.push_back({b + "att.value.weight", {A, D}});
    keys.push_back({b + "att.receptance.weight", {A, D}});
    keys.push_back({b + "att.output.weight", {D, A}});
    keys.push_back({b + "ffn.time_mix_k", {1, 1, D}});
    keys.push_back({b + "ffn.time_mix_r", {1, 1, D}});
    keys.push_back({b + "ffn.key.weight", {F, D}});
    keys.push_back({b + "ffn.receptance.weight", {D, D}});
    keys.push_back({b + "ffn.value.weight", {D, F}});
  }
  keys.push_back({"ln_out.weight", {D}});
  keys.push_back({"ln_out.bias", {D}});
  keys.push_back({"head.weight", {V, D}});
  return keys;
}

std::map<std::string, torch::Tensor> by_name(const rwkv::RWKV& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters()) out[p.key()] = p.value().detach().to(torch::kDouble);
  return out;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

int64_t paper_count(int64_t L, int64_t D, int64_t V) { return 2 * V * D + 13 * D * D * L + D * (11 * L + 4); }

ModelConfig load_config(const std::string& name) {
  const auto path = (rwkv::test::source_dir() / "configs" / name).string();
  return rwkv::model_config_from_yaml(YAML::LoadFile(path)["model"], path);
}

// The rest of `rwkv info`'s table row for `name`, with runs of spaces collapsed to one.
std::string table_row(const std::string& out, const std::string& name) {
  const size_t at = out.find("\n  " + name + " ");
  if (at == std::string::npos) return "(no row for " + name + ")";
  const size_t begin = at + 3 + name.size(), end = out.find('\n', begin);
  std::string row;
  for (char ch : out.substr(begin, end - begin)) {
    if (ch != ' ' || (!row.empty() && row.back() != ' ')) row += ch;
  }
  return row;
}

}  // namespace

TEST_CASE("named parameters are the reference state_dict: names, shapes and order", "[model]") {
  for (const auto& [c, A, F] : {std::tuple{shape(3, 16, 37), 16, 64},
                                std::tuple{shape(2, 16, 37, 24, 40), 24, 40},
                                std::tuple{shape(1, 8, 5), 8, 32}}) {
    const rwkv::RWKV model(c, kMeta);
    const auto expected = reference_state_dict(c.n_layer, c.n_embd, c.vocab_size, A, F);
    const auto params = model->named_parameters();
    REQUIRE(params.size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      INFO("position " << i);
      CHECK(params[i].key() == expected[i].first);
      CHECK(params[i].value().sizes().vec() == expected[i].second);
    }
    CHECK(model->named_buffers().size() == 0);  // a .pth export is the parameters alone
  }
}

TEST_CASE("parameter counts and FLOPs of the six configs match rwkv/README.md 'Shapes' and paper Table 2",
          "[model]") {
  struct Row {
    const char* file;
    int64_t L, D;
    double table2_flops;
  };
  const Row rows[] = {{"rwkv4-169m.yaml", 12, 768, 2.613e8},  {"rwkv4-430m.yaml", 24, 1024, 7.573e8},
                      {"rwkv4-1b5.yaml", 24, 2048, 2.823e9},  {"rwkv4-3b.yaml", 32, 2560, 5.710e9},
                      {"rwkv4-7b.yaml", 32, 4096, 1.437e10},  {"rwkv4-14b.yaml", 40, 5120, 2.778e10}};
  for (const Row& row : rows) {
    INFO(row.file);
    const ModelConfig c = load_config(row.file);
    REQUIRE(c.n_layer == row.L);
    REQUIRE(c.n_embd == row.D);
    REQUIRE(c.vocab_size == 50277);
    const rwkv::RWKV model(c, kMeta);
    CHECK(rwkv::parameter_count(*model) == paper_count(row.L, row.D, 50277));
    const int64_t flops = rwkv::forward_flops_per_token(*model);
    CHECK(flops == 2 * (13 * row.L * row.D * row.D + 50277 * row.D));
    CHECK(static_cast<double>(flops) == Approx(row.table2_flops).epsilon(5e-4));
  }
  // The two end points as the issue states them.
  CHECK(rwkv::parameter_count(*rwkv::RWKV(load_config("rwkv4-169m.yaml"), kMeta)) == 169342464);
  CHECK(rwkv::parameter_count(*rwkv::RWKV(load_config("rwkv4-14b.yaml"), kMeta)) == 14148597760);
}

TEST_CASE("initialisation follows the reference code's rules", "[model]") {
  const int64_t L = 4, D = 24, V = 53;
  rwkv::RWKV model(shape(L, D, V));
  rwkv::init_weights(model, {.seed = 7, .emb_scale = 0.01});
  auto p = by_name(model);

  SECTION("zero matrices are zero") {
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      for (const char* m : {"att.key", "att.receptance", "att.output", "ffn.value", "ffn.receptance"}) {
        INFO(b << m);
        CHECK(max_abs(p.at(b + m + ".weight")) == 0.0);
      }
    }
  }

  SECTION("orthogonal matrices are orthogonal with the reference gain") {
    // On the smaller side W Wᵀ (wide or square) or Wᵀ W (tall) is gain² I.
    const auto gram_error = [](const torch::Tensor& w, double gain) {
      const torch::Tensor g = w.size(0) >= w.size(1) ? w.t().mm(w) : w.mm(w.t());
      return max_abs(g - gain * gain * torch::eye(g.size(0), torch::kDouble));
    };
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      CHECK(gram_error(p.at(b + "att.value.weight"), 1.0) < 1e-5);
      CHECK(gram_error(p.at(b + "ffn.key.weight"), 2.0) < 1e-5);  // √(F/D) = √4
    }
    CHECK(gram_error(p.at("head.weight"), 0.5 * std::sqrt(53.0 / 24.0)) < 1e-5);
  }

  SECTION("embedding is uniform in ±emb_scale, layer norms are identity") {
    const torch::Tensor e = p.at("emb.weight");
    CHECK(max_abs(e) <= 0.01);
    CHECK(e.max().item<double>() > 0.009);
    CHECK(e.min().item<double>() < -0.009);
    CHECK(std::abs(e.mean().item<double>()) < 0.001);  // 1272 samples: σ of the mean ≈ 1.6e-4
    for (const auto& [name, t] : p) {
      if (name.find("ln") == std::string::npos) continue;
      INFO(name);
      const bool weight = name.size() > 7 && name.substr(name.size() - 7) == ".weight";
      CHECK(max_abs(t - (weight ? 1.0 : 0.0)) == 0.0);
    }
  }

  SECTION("time_* vectors follow the reference formulas (rwkv/README.md 'Initialisation')") {
    const double zigzag[3] = {0.0, 0.5, -0.5};  // 0.5·(((c+1) mod 3) − 1) for c mod 3 = 0, 1, 2
    for (int64_t l : {0, 1, 3}) {
      const double r0 = l / 3.0;          // l / (L − 1)
      const double r1 = 1.0 - l / 4.0;    // 1 − l / L
      const std::string b = "blocks." + std::to_string(l) + ".";
      for (int64_t c : {0, 1, 2, 10, 23}) {
        INFO("layer " << l << " channel " << c);
        const double x = c / 24.0;
        CHECK(p.at(b + "att.time_decay")[c].item<double>() ==
              Approx(-5.0 + 8.0 * std::pow(c / 23.0, 0.7 + 1.3 * r0)).margin(1e-6));
        CHECK(p.at(b + "att.time_first")[c].item<double>() ==
              Approx(std::log(0.3) + zigzag[c % 3]).margin(1e-6));
        CHECK(p.at(b + "att.time_mix_k")[0][0][c].item<double>() == Approx(std::pow(x, r1)).margin(1e-6));
        CHECK(p.at(b + "att.time_mix_v")[0][0][c].item<double>() ==
              Approx(std::pow(x, r1) + 0.3 * r0).margin(1e-6));
        CHECK(p.at(b + "att.time_mix_r")[0][0][c].item<double>() ==
              Approx(std::pow(x, 0.5 * r1)).margin(1e-6));
        CHECK(p.at(b + "ffn.time_mix_k")[0][0][c].item<double>() == Approx(std::pow(x, r1)).margin(1e-6));
        CHECK(p.at(b + "ffn.time_mix_r")[0][0][c].item<double>() == Approx(std::pow(x, r1)).margin(1e-6));
      }
    }
  }
}

TEST_CASE("orthogonal gain follows the matrix shape when dim_att differs from n_embd", "[model]") {
  // The reference's gain is √(rows/cols) for a tall matrix, 1 otherwise.
  for (const auto& [A, gain] : {std::pair{int64_t{32}, std::sqrt(32.0 / 16.0)}, std::pair{int64_t{8}, 1.0}}) {
    rwkv::RWKV model(shape(2, 16, 20, A, 48));
    rwkv::init_weights(model, {.seed = 1});
    const auto p = by_name(model);
    const torch::Tensor w = p.at("blocks.1.att.value.weight");
    const torch::Tensor g = w.size(0) >= w.size(1) ? w.t().mm(w) : w.mm(w.t());
    CHECK(max_abs(g - gain * gain * torch::eye(g.size(0), torch::kDouble)) < 1e-5);
    const torch::Tensor k = p.at("blocks.0.ffn.key.weight");  // (48, 16): √3
    CHECK(max_abs(k.t().mm(k) - 3.0 * torch::eye(16, torch::kDouble)) < 1e-5);
  }
}

TEST_CASE("L = 1 initialises without dividing by zero", "[model]") {
  rwkv::RWKV model(shape(1, 12, 9));
  rwkv::init_weights(model, {.seed = 2});
  const auto p = by_name(model);
  for (const auto& [name, t] : p) {
    INFO(name);
    CHECK(torch::isfinite(t).all().item<bool>());
  }
  // With r0 = 0 and r1 = 1: the decay exponent is 0.7 and time_mix_v has no offset.
  CHECK(p.at("blocks.0.att.time_decay")[11].item<double>() == Approx(3.0).margin(1e-6));
  CHECK(p.at("blocks.0.att.time_decay")[5].item<double>() ==
        Approx(-5.0 + 8.0 * std::pow(5.0 / 11.0, 0.7)).margin(1e-6));
  CHECK(max_abs(p.at("blocks.0.att.time_mix_v") - p.at("blocks.0.att.time_mix_k")) == 0.0);
}

TEST_CASE("initialisation is a function of the seed alone", "[model]") {
  const auto init = [](uint64_t seed, torch::Dtype dtype) {
    rwkv::RWKV m(shape(2, 16, 30), torch::TensorOptions().dtype(dtype));
    rwkv::init_weights(m, {.seed = seed, .emb_scale = 0.5});
    return by_name(m);
  };
  const auto a = init(11, torch::kFloat), b = init(11, torch::kFloat), c = init(12, torch::kFloat);
  const auto half = init(11, torch::kBFloat16);
  for (const auto& [name, t] : a) {
    INFO(name);
    CHECK(torch::equal(t, b.at(name)));
    // A bf16 model gets the fp32 values rounded to bf16.
    CHECK(torch::equal(t.to(torch::kBFloat16).to(torch::kDouble), half.at(name)));
  }
  CHECK_FALSE(torch::equal(a.at("emb.weight"), c.at("emb.weight")));
  CHECK_FALSE(torch::equal(a.at("head.weight"), c.at("head.weight")));
  CHECK(torch::equal(a.at("blocks.1.att.time_decay"), c.at("blocks.1.att.time_decay")));
}

TEST_CASE("init_rule describes every parameter and rejects names the model lacks", "[model]") {
  const ModelConfig c = shape(3, 8, 11);
  const rwkv::RWKV model(c, kMeta);
  for (const auto& p : model->named_parameters()) CHECK_FALSE(rwkv::init_rule(p.key(), c, {}).empty());
  CHECK(rwkv::init_rule("blocks.2.ffn.key.weight", c, {}) == "orthogonal, gain 2");
  CHECK(rwkv::init_rule("emb.weight", c, {.emb_scale = 6e-4}) == "uniform(-0.0006, 0.0006)");
  for (const char* bad : {"blocks.3.att.key.weight", "blocks.1.ln0.weight", "blocks.x.ln1.weight",
                          "blocks.0.att.bias", "head.bias", "emb"}) {
    INFO(bad);
    CHECK_THROWS_AS(rwkv::init_rule(bad, c, {}), std::invalid_argument);
  }
  rwkv::RWKV meta(c, kMeta);
  CHECK_THROWS(rwkv::init_weights(meta, {}));  // nothing to fill on the meta device
}

TEST_CASE("rwkv info prints the 14B model without allocating it", "[model]") {
  // 8 GB of address space: the parameters alone would need 28 GB in bf16 and 57 GB in fp32,
  // so any allocation of them fails the command.
  const std::string cmd = "ulimit -v 8000000 && " + rwkv::test::rwkv_binary().string() + " info " +
                          (rwkv::test::source_dir() / "configs" / "rwkv4-14b.yaml").string();
  std::string out;
  REQUIRE(rwkv::test::run(cmd, &out) == 0);
  CHECK_THAT(out, Catch::Contains("parameters: 14148597760\n"));
  CHECK_THAT(out, Catch::Contains("forward FLOPs per token: " +
                                  std::to_string(2 * (13 * 40 * 5120LL * 5120 + 50277LL * 5120))));
  CHECK_THAT(out, Catch::Contains("bf16 26.35 GiB"));
  // The table has every tensor, with its shape, size and rule.
  CHECK(table_row(out, "blocks.39.ffn.value.weight") == "[5120, 20480] 104857600 zeros");
  CHECK(table_row(out, "head.weight") == "[50277, 5120] 257418240 orthogonal, gain 1.56682");
  CHECK(table_row(out, "blocks.0.att.time_decay") == "[5120] 5120 -5 + 8*(c/5119)^0.7");
  CHECK(table_row(out, "blocks.39.att.time_mix_v") == "[1, 1, 5120] 5120 (c/5120)^0.025 + 0.3");
}

TEST_CASE("rwkv info rejects a bad config with the file, line and key", "[model]") {
  const auto bin = rwkv::test::rwkv_binary().string();
  // Plain files removed with std::remove: TempDir's std::filesystem::remove_all resolves to the
  // copy exported by the torch wheel's libtorch.so, which crashes.
  const std::string base = "/tmp/rwkv-test-model-" + std::to_string(::getpid()) + "-";
  const auto info = [&](const std::string& name, const std::string& yaml) {
    const std::string path = base + name;
    std::ofstream(path) << yaml;
    std::string out;
    const int rc = rwkv::test::run(bin + " info " + path, &out);
    std::remove(path.c_str());
    CHECK(rc != 0);
    return out;
  };
  CHECK_THAT(info("typo.yaml", "train:\n  lr: 1\nmodel:\n  n_layer: 2\n  n_embd: 8\n  vocab_size: 5\n  n_head: 4\n"),
             Catch::Contains("typo.yaml:7: model.n_head: unknown key"));
  CHECK_THAT(info("neg.yaml", "model:\n  n_layer: -2\n  n_embd: 8\n  vocab_size: 5\n"),
             Catch::Contains("neg.yaml:2: model.n_layer: expected a positive integer"));
  CHECK_THAT(info("none.yaml", "train:\n  lr: 1\n"), Catch::Contains("none.yaml: no 'model:' section"));
  const std::string broken = info("broken.yaml", "model: [\n");
  CHECK_THAT(broken, Catch::Contains("broken.yaml:2:1: invalid YAML"));
  std::string out;
  CHECK(rwkv::test::run(bin + " info " + base + "missing.yaml", &out) != 0);
  CHECK_THAT(out, Catch::Contains("missing.yaml: cannot open"));
}
