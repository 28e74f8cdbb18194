// A checkpoint's tensor files are torch.save-format (trainer/io/pth_writer.h), so Python opens them
// with torch.load(weights_only=True); checkpoints written before that, with LibTorch's
// pickle_save, still load (trainer/checkpoint/checkpoint.h).
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <tuple>

#include "tests/support/test_util.h"
#include "trainer/checkpoint/checkpoint.h"

namespace fs = std::filesystem;
using rwkv::test::tensor_named;
using namespace rwkv::trainer;

namespace {

Checkpoint sample_checkpoint() {
  torch::manual_seed(7);
  Checkpoint c;
  c.progress = {.step = 3, .stage = 0, .stage_step = 3, .stage_samples = 24, .adam_steps = 3};
  c.weights = {{"emb.weight", torch::randn({5, 4})}, {"blocks.0.att.time_decay", torch::randn({4})}};
  c.optimizer = {{"exp_avg.emb.weight", torch::randn({5, 4})}, {"exp_avg_sq.emb.weight", torch::rand({5, 4})}};
  capture_rng(c);
  c.config_yaml = "model: {}\n";
  return c;
}

void write_bytes(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<char> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

// What the code before the project's .pth writer wrote: pickle_save of a str → Tensor dict.
std::vector<char> legacy_pickle(const rwkv::NamedTensors& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : tensors) dict.insert(name, t);
  return torch::pickle_save(c10::IValue(dict));
}

void require_same(const Checkpoint& got, const Checkpoint& want) {
  CHECK(got.progress == want.progress);
  REQUIRE(got.weights.size() == want.weights.size());
  for (const auto& [name, t] : want.weights) CHECK(torch::equal(tensor_named(got.weights, name), t));
  REQUIRE(got.optimizer.size() == want.optimizer.size());
  for (const auto& [name, t] : want.optimizer) CHECK(torch::equal(tensor_named(got.optimizer, name), t));
  CHECK(torch::equal(got.cpu_rng, want.cpu_rng));
}

}  // namespace

TEST_CASE("checkpoint tensor files open with torch.load(weights_only=True) and hold the saved values",
          "[checkpoint][interop]") {
  rwkv::test::TempDir dir("rwkv-ckpt-pth");
  const Checkpoint c = sample_checkpoint();
  const fs::path path = save_checkpoint(dir.path(), c, 1);
  // Python prints, per file, each key with the sum of its values (in double) in file order.
  const std::string script = fmt::format(R"(
import torch
for f in ("weights.pt", "optimizer.pt", "rng.pt"):
    d = torch.load("{}/" + f, weights_only=True, map_location="cpu")
    for k, v in d.items():
        print(f, k, repr(v.double().sum().item()))
)", path.string());
  std::ofstream(dir / "read.py") << script;
  std::string out;
  REQUIRE(rwkv::test::run(rwkv::test::python() + " " + (dir / "read.py").string(), &out) == 0);
  // The names in file order exactly, the sums to double rounding.
  std::istringstream lines(out);
  std::vector<std::tuple<std::string, std::string, double>> got;
  for (std::string f, k, v; lines >> f >> k >> v;) got.emplace_back(f, k, std::stod(v));
  std::vector<std::tuple<std::string, std::string, double>> expected;
  for (const auto& [n, t] : c.weights) expected.emplace_back("weights.pt", n, t.to(torch::kFloat64).sum().item<double>());
  for (const auto& [n, t] : c.optimizer) expected.emplace_back("optimizer.pt", n, t.to(torch::kFloat64).sum().item<double>());
  expected.emplace_back("rng.pt", "cpu", c.cpu_rng.to(torch::kFloat64).sum().item<double>());
  INFO(out);
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(std::get<0>(got[i]) == std::get<0>(expected[i]));
    CHECK(std::get<1>(got[i]) == std::get<1>(expected[i]));
    CHECK(std::get<2>(got[i]) == Approx(std::get<2>(expected[i])).epsilon(1e-12));
  }
}

TEST_CASE("a checkpoint written with pickle_save (before the .pth writer) still loads", "[checkpoint]") {
  rwkv::test::TempDir dir("rwkv-ckpt-legacy");
  const Checkpoint c = sample_checkpoint();
  const fs::path path = save_checkpoint(dir.path(), c, 1);
  // Rewrite the three tensor files as the earlier code did, with COMPLETE describing them.
  nlohmann::json marker = nlohmann::json::parse(read_bytes(path / "COMPLETE"));
  const std::pair<const char*, rwkv::NamedTensors> files[] = {
      {"weights.pt", c.weights}, {"optimizer.pt", c.optimizer}, {"rng.pt", {{"cpu", c.cpu_rng}}}};
  for (const auto& [fname, tensors] : files) {
    const std::vector<char> bytes = legacy_pickle(tensors);
    // The tag that makes torch.load(weights_only=True) refuse these files (data.pkl is stored).
    REQUIRE(std::string(bytes.begin(), bytes.end()).find("restore_type_tag") != std::string::npos);
    write_bytes(path / fname, bytes);
    marker["files"][fname] = {{"bytes", bytes.size()}, {"hash", content_hash(bytes)}};
  }
  const std::string m = marker.dump(2);
  write_bytes(path / "COMPLETE", std::vector<char>(m.begin(), m.end()));
  require_same(load_checkpoint(path), c);
}

TEST_CASE("a save leaves no temporary behind and replaces a checkpoint of the same step", "[checkpoint]") {
  rwkv::test::TempDir dir("rwkv-ckpt-temp");
  Checkpoint c = sample_checkpoint();
  save_checkpoint(dir.path(), c, 3);
  c.weights[0].tensor = c.weights[0].tensor + 1;  // the same step saved again after a resume
  // A crashed earlier save's leftovers: the old and the current temporary spellings.
  fs::create_directories(dir / ".tmp-step-00000002");
  fs::create_directories(dir / ".step-00000002.tmp-12345");
  const fs::path path = save_checkpoint(dir.path(), c, 3);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename().string());
  CHECK(names == std::vector<std::string>{"step-00000003"});
  require_same(load_checkpoint(path), c);
}
