// [io][interop] A random small RWKV-4 exported both ways is read by the real clients: the
// `rwkv` package runs our .pth and transformers' RwkvForCausalLM runs our HF folder, and the two
// give the same logits; both exports import back bit-exactly.
#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rwkv/reference_layout.h"
#include "tests/support/test_random_weights.h"
#include "tests/support/test_util.h"
#include "trainer/io/hf_folder.h"
#include "trainer/io/pth_reader.h"
#include "trainer/io/pth_writer.h"
#include "trainer/io/weight_files.h"

namespace {

using rwkv::NamedTensors;
using rwkv::test::random_model;
using rwkv::test::python;
using rwkv::test::run;
using rwkv::test::TempDir;

torch::Tensor logits_from(const std::filesystem::path& json) {
  std::ifstream f(json);
  const auto rows = nlohmann::json::parse(f)["logits"].get<std::vector<std::vector<double>>>();
  torch::Tensor t = torch::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())},
                                 torch::kFloat64);
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t j = 0; j < rows[i].size(); ++j) t[i][j] = rows[i][j];
  return t;
}

std::string interop(const std::string& args) {
  std::string out;
  const std::string script = (rwkv::test::source_dir() / "tests/interop/weights_interop.py").string();
  const int rc = run(python() + " " + script + " " + args, &out);
  INFO(out);
  REQUIRE(rc == 0);
  return out;
}

}  // namespace

TEST_CASE("export: the rwkv package on our .pth and transformers on our HF folder agree",
          "[io][interop]") {
  rwkv::ModelConfig c;
  c.n_layer = 3;
  c.n_embd = 16;
  c.vocab_size = 41;
  c.dim_ffn = 48;  // not 4D, so intermediate_size must really come from config.json
  const NamedTensors model = random_model(c, 11);
  TempDir dir("rwkv-export");
  const std::string tokens = "3,17,0,40,5,5,22,9,31,1";

  rwkv::io::write_pth(dir / "model.pth", model, torch::kFloat32);
  rwkv::io::write_hf_folder(dir / "hf", model, c, 256, torch::kFloat32);
  interop(fmt::format("logits-rwkv {} {} --tokens {}", (dir / "model.pth").string(),
                      (dir / "rwkv.json").string(), tokens));
  interop(fmt::format("logits-hf {} {} --tokens {}", (dir / "hf").string(), (dir / "hf.json").string(), tokens));
  const torch::Tensor a = logits_from(dir / "rwkv.json");
  const torch::Tensor b = logits_from(dir / "hf.json");
  REQUIRE(a.sizes() == b.sizes());
  CHECK(a.size(0) == 10);
  CHECK(a.size(1) == c.vocab_size);
  const double diff = (a - b).abs().max().item<double>();
  INFO("max |rwkv package - transformers| = " << diff << ", logit scale " << a.abs().max().item<double>());
  CHECK(diff <= 1e-4);
  CHECK(a.std().item<double>() > 0.1);  // the weights really shape the output

  SECTION("both exports import back bit-exactly under the reference keys") {
    for (const NamedTensors& back : {rwkv::io::read_pth(dir / "model.pth"), rwkv::io::read_hf_folder(dir / "hf")}) {
      REQUIRE(back.size() == model.size());
      std::vector<rwkv::TensorShape> shapes;
      for (size_t i = 0; i < back.size(); ++i) {
        INFO(model[i].name);
        CHECK(back[i].name == model[i].name);
        CHECK(torch::equal(back[i].tensor, model[i].tensor));
        shapes.push_back({back[i].name, back[i].tensor.sizes().vec()});
      }
      CHECK_NOTHROW(rwkv::check_reference_layout(shapes, c, "round trip"));
    }
  }
}

TEST_CASE("rwkv import/export CLI: a released-style bf16 OrderedDict round trips bit-exactly",
          "[io][interop]") {
  rwkv::ModelConfig c;
  c.n_layer = 2;
  c.n_embd = 8;
  c.vocab_size = 19;
  TempDir dir("rwkv-cli");
  rwkv::io::write_pth(dir / "fp32.pth", random_model(c, 5));
  interop(fmt::format("resave-released {} {}", (dir / "fp32.pth").string(), (dir / "released.pth").string()));
  const NamedTensors released = rwkv::io::read_pth(dir / "released.pth");
  std::ofstream(dir / "run.yaml") << "model:\n  n_layer: 2\n  n_embd: 8\n  vocab_size: 19\n";
  std::ofstream(dir / "wider.yaml") << "model:\n  n_layer: 2\n  n_embd: 12\n  vocab_size: 19\n";
  std::string out;
  // Runs `rwkv ARGS`; a failing command shows its output.
  const auto cli = [&](const std::string& args, bool expect_success) {
    const int rc = run(rwkv::test::rwkv_binary().string() + " " + args, &out);
    INFO("rwkv " << args << "\n" << out);
    if (expect_success) REQUIRE(rc == 0);
    else REQUIRE(rc != 0);
  };

  cli(fmt::format("import {} --config {} --out {}", (dir / "released.pth").string(), (dir / "run.yaml").string(),
                  (dir / "init.pth").string()), true);
  const NamedTensors init = rwkv::io::read_pth(dir / "init.pth");
  REQUIRE(init.size() == released.size());
  for (size_t i = 0; i < init.size(); ++i) {
    INFO(init[i].name);
    CHECK(init[i].tensor.scalar_type() == torch::kFloat32);  // training keeps fp32 master weights
    CHECK(torch::equal(init[i].tensor, released[i].tensor.to(torch::kFloat32)));
  }

  for (const std::string format : {"pth", "hf"}) {
    const auto exported = dir / ("exported-" + format);
    cli(fmt::format("export {} --format {} --dtype bf16 --out {}", (dir / "init.pth").string(), format,
                    exported.string()), true);
    const NamedTensors back = rwkv::io::read_model_weights(exported).tensors;
    REQUIRE(back.size() == released.size());
    for (size_t i = 0; i < back.size(); ++i) {
      INFO(format << " " << back[i].name);
      CHECK(back[i].name == released[i].name);
      CHECK(back[i].tensor.scalar_type() == torch::kBFloat16);
      CHECK(torch::equal(back[i].tensor, released[i].tensor));
    }
  }

  // A config of another width: rejected, nothing written.
  cli(fmt::format("import {} --config {} --out {}", (dir / "released.pth").string(), (dir / "wider.yaml").string(),
                  (dir / "bad.pth").string()), false);
  CHECK_THAT(out, Catch::Contains("'emb.weight' has shape (19, 8), expected (19, 12)") &&
                      Catch::Contains("wider.yaml"));
  CHECK_FALSE(std::filesystem::exists(dir / "bad.pth"));

  // A truncated file: rejected with the file named, nothing written.
  std::filesystem::copy_file(dir / "released.pth", dir / "cut.pth");
  std::filesystem::resize_file(dir / "cut.pth", std::filesystem::file_size(dir / "cut.pth") - 100);
  cli(fmt::format("export {} --format hf --out {}", (dir / "cut.pth").string(), (dir / "cut-hf").string()), false);
  CHECK_THAT(out, Catch::Contains("cut.pth"));
  CHECK_FALSE(std::filesystem::exists(dir / "cut-hf"));
}
