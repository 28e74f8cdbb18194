// [io] The weight-file formats against the real Python clients: our .pth is what
// torch.load(weights_only=True) returns as a plain dict, we read Python-saved (Ordered)dicts
// bit-exactly, safetensors both ways, and damaged files fail with the tensor named.
#include <caffe2/serialize/inline_container.h>

#include <fstream>
#include <functional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"
#include "trainer/io/pth_reader.h"
#include "trainer/io/pth_writer.h"
#include "trainer/io/safetensors_file.h"

namespace {

using rwkv::NamedTensors;
using rwkv::test::python;
using rwkv::test::run;
using rwkv::test::TempDir;

std::string interop_script() { return (rwkv::test::source_dir() / "tests/interop/weights_interop.py").string(); }

// Runs the interop script; fails the test with its output when it exits non-zero.
void py(const std::string& args) {
  std::string out;
  const int rc = run(python() + " " + interop_script() + " " + args, &out);
  INFO(out);
  REQUIRE(rc == 0);
}

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

// Bit patterns of a tensor as the script writes them (int32 for fp32, int16 for 16-bit types).
std::vector<int64_t> bits(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  const torch::Tensor b = c.view(c.element_size() == 4 ? torch::kInt32 : torch::kInt16).flatten().to(torch::kInt64);
  return std::vector<int64_t>(b.data_ptr<int64_t>(), b.data_ptr<int64_t>() + b.numel());
}

std::string dtype_name(const torch::Tensor& t) { return rwkv::io::weight_dtype_name(t.scalar_type()); }

// Same names in the same order, dtypes, shapes and bits as the script reported.
void require_same(const NamedTensors& ours, const nlohmann::json& theirs) {
  REQUIRE(ours.size() == theirs.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    INFO("tensor " << theirs[i]["name"]);
    CHECK(ours[i].name == theirs[i]["name"].get<std::string>());
    CHECK(dtype_name(ours[i].tensor) == theirs[i]["dtype"].get<std::string>());
    CHECK(ours[i].tensor.sizes().vec() == theirs[i]["shape"].get<std::vector<int64_t>>());
    CHECK(bits(ours[i].tensor) == theirs[i]["bits"].get<std::vector<int64_t>>());
  }
}

// Tensors a released checkpoint has, in the three dtypes, with awkward values and shapes.
NamedTensors sample() {
  torch::manual_seed(3);
  return {
      {"emb.weight", torch::randn({13, 8})},
      {"blocks.0.att.time_mix_k", torch::rand({1, 1, 8}).to(torch::kBFloat16)},
      {"blocks.0.att.time_decay", (torch::randn({8}) * 4).to(torch::kBFloat16)},
      {"half", torch::randn({3, 5}).to(torch::kFloat16)},
      {"huge_and_tiny", torch::tensor({3e38f, -1e-40f, 0.0f, -0.0f, 1.0f})},
      {"transposed_source", torch::randn({4, 6}).t()},  // the writer must store it contiguous
      {"scalar", torch::tensor(1.5f)},
      {"empty", torch::zeros({0, 4})},
      {"long_shape", torch::randn({300, 70000 / 300})},  // sizes above BININT1, numel above BININT2
  };
}

void flip_byte(const std::filesystem::path& p, std::uintmax_t offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x5a));
}

void truncate_to(const std::filesystem::path& p, std::uintmax_t size) { std::filesystem::resize_file(p, size); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("pth writer: torch.load(weights_only=True) returns a plain dict with our exact tensors",
          "[io][interop]") {
  TempDir dir("rwkv-pth");
  const NamedTensors tensors = sample();
  rwkv::io::write_pth(dir / "ours.pth", tensors);
  py("dump-pth " + (dir / "ours.pth").string() + " " + (dir / "seen.json").string());
  const nlohmann::json seen = read_json(dir / "seen.json");
  CHECK(seen["type"] == "builtins.dict");
  require_same(tensors, seen["tensors"]);
  for (const auto& t : seen["tensors"]) CHECK(t["contiguous"] == true);

  SECTION("with a dtype conversion on the way out") {
    rwkv::io::write_pth(dir / "bf16.pth", tensors, torch::kBFloat16);
    py("dump-pth " + (dir / "bf16.pth").string() + " " + (dir / "bf16.json").string());
    NamedTensors converted;
    for (const auto& [n, t] : tensors) converted.push_back({n, t.to(torch::kBFloat16)});
    require_same(converted, read_json(dir / "bf16.json")["tensors"]);
  }
}

TEST_CASE("pth reader: Python-saved OrderedDict, dict and state_dict files read bit-exactly",
          "[io][interop]") {
  TempDir dir("rwkv-pth");
  for (const std::string kind : {"ordered", "state_dict", "dict"}) {
    for (const int protocol : {2, 4}) {
      DYNAMIC_SECTION(kind << " pickled with protocol " << protocol) {
        const auto file = dir / (kind + std::to_string(protocol) + ".pth");
        const auto json = dir / (kind + std::to_string(protocol) + ".json");
        py(fmt::format("save-pth {} {} --kind {} --protocol {}", file.string(), json.string(), kind, protocol));
        require_same(rwkv::io::read_pth(file), read_json(json)["tensors"]);
      }
    }
  }
}

TEST_CASE("pth reader: our own files round trip bit-exactly", "[io]") {
  TempDir dir("rwkv-pth");
  const NamedTensors tensors = sample();
  rwkv::io::write_pth(dir / "a.pth", tensors);
  const NamedTensors back = rwkv::io::read_pth(dir / "a.pth");
  REQUIRE(back.size() == tensors.size());
  for (size_t i = 0; i < back.size(); ++i) {
    INFO(tensors[i].name);
    CHECK(back[i].name == tensors[i].name);
    CHECK(back[i].tensor.scalar_type() == tensors[i].tensor.scalar_type());
    CHECK(bits(back[i].tensor) == bits(tensors[i].tensor));
  }
}

TEST_CASE("pth files: damaged or foreign files are rejected naming the problem", "[io]") {
  TempDir dir("rwkv-pth");
  const auto good = dir / "good.pth";
  rwkv::io::write_pth(good, {{"alpha", torch::randn({64})}, {"beta", torch::randn({32, 32})}});
  const auto size = std::filesystem::file_size(good);

  SECTION("truncated") {
    truncate_to(good, size / 2);
    const std::string e = error_of([&] { rwkv::io::read_pth(good); });
    CHECK_THAT(e, Catch::Contains(good.string()) && Catch::Contains("truncated or corrupt"));
  }
  SECTION("not a zip at all") {
    std::ofstream(dir / "text.pth") << "hello";
    CHECK_THAT(error_of([&] { rwkv::io::read_pth(dir / "text.pth"); }), Catch::Contains("not a PyTorch zip"));
  }
  SECTION("a storage record whose size disagrees with the pickle names the tensor") {
    py(fmt::format("save-pth {} {}", (dir / "py.pth").string(), (dir / "py.json").string()));
    std::string out;
    // Rewrite the zip with the storage of the second tensor ('blocks.0.att.time_mix_k') cut short.
    const std::string cmd = python() + " -c \"import zipfile,sys\n"
                            "src=zipfile.ZipFile(sys.argv[1]); dst=zipfile.ZipFile(sys.argv[2],'w')\n"
                            "for n in src.namelist():\n"
                            "    b=src.read(n)\n"
                            "    dst.writestr(n, b[:-2] if n.endswith('/data/1') else b)\n"
                            "dst.close()\" " + (dir / "py.pth").string() + " " + (dir / "cut.pth").string();
    REQUIRE(run(cmd, &out) == 0);
    const std::string e = error_of([&] { rwkv::io::read_pth(dir / "cut.pth"); });
    CHECK_THAT(e, Catch::Contains("tensor 'blocks.0.att.time_mix_k'") && Catch::Contains("data/1") &&
                      Catch::Contains("truncated or corrupt"));
  }
  SECTION("a flipped byte inside a tensor's data is caught by the zip checksum and names the tensor") {
    caffe2::serialize::PyTorchStreamReader zip(good.string());
    const auto offset = zip.getRecordOffset("data/1");
    flip_byte(good, offset + 100);
    rwkv::io::PthReader reader(good);
    CHECK_NOTHROW(reader.read(reader.entries()[0]));
    CHECK_THAT(error_of([&] { reader.read(reader.entries()[1]); }), Catch::Contains("tensor 'beta'"));
  }
  SECTION("a pickle holding something other than tensors names the entry") {
    const std::string cmd = python() + " -c \"import torch,sys; torch.save({'w': torch.ones(2), 'note': 'hi'}, "
                            "sys.argv[1])\" " + (dir / "mixed.pth").string();
    REQUIRE(run(cmd) == 0);
    CHECK_THAT(error_of([&] { rwkv::io::read_pth(dir / "mixed.pth"); }),
               Catch::Contains("entry 'note' is a str, not a tensor"));
  }
  SECTION("an unsupported callable in the pickle is named") {
    const std::string cmd = python() + " -c \"import torch,sys; torch.save({'w': torch.ones(2), 'o': "
                            "torch.nn.Linear(2, 2)}, sys.argv[1])\" " + (dir / "module.pth").string();
    REQUIRE(run(cmd) == 0);
    CHECK_THAT(error_of([&] { rwkv::io::read_pth(dir / "module.pth"); }), Catch::Contains("unsupported"));
  }
  SECTION("a failed write leaves the existing file untouched and no temporary behind") {
    const auto before = std::filesystem::file_size(good);
    CHECK_THROWS(rwkv::io::write_pth(good, {{"x", torch::ones({2})}, {"x", torch::ones({3})}}));
    CHECK_THROWS(rwkv::io::write_pth(good, {{"ok", torch::ones({2})}, {"complex", torch::ones({2}, torch::kComplexFloat)}}));
    CHECK(std::filesystem::file_size(good) == before);
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 1);
  }
}

TEST_CASE("safetensors: round trip, and Python's safetensors reads ours and writes what we read",
          "[io][interop]") {
  TempDir dir("rwkv-st");
  const NamedTensors tensors = sample();
  rwkv::io::write_safetensors(dir / "ours.safetensors", tensors);

  const NamedTensors back = rwkv::io::read_safetensors(dir / "ours.safetensors");
  require_same(back, [&] {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& [n, t] : tensors)
      j.push_back({{"name", n}, {"dtype", dtype_name(t)}, {"shape", t.sizes().vec()}, {"bits", bits(t)}});
    return j;
  }());
  CHECK(rwkv::io::SafetensorsReader(dir / "ours.safetensors").metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}});

  py("dump-safetensors " + (dir / "ours.safetensors").string() + " " + (dir / "seen.json").string());
  const nlohmann::json seen = read_json(dir / "seen.json");
  CHECK(seen["metadata"]["format"] == "pt");
  // safetensors returns its dict sorted by name; compare by name.
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& t : seen["tensors"]) by_name[t["name"]] = t;
  REQUIRE(by_name.size() == tensors.size());
  for (const auto& [n, t] : tensors) {
    INFO(n);
    CHECK(by_name[n]["shape"].get<std::vector<int64_t>>() == t.sizes().vec());
    CHECK(by_name[n]["bits"].get<std::vector<int64_t>>() == bits(t));
  }

  py("save-safetensors " + (dir / "py.safetensors").string() + " " + (dir / "py.json").string());
  NamedTensors theirs = rwkv::io::read_safetensors(dir / "py.safetensors");
  const nlohmann::json saved = read_json(dir / "py.json");
  std::map<std::string, nlohmann::json> expected;
  for (const auto& t : saved["tensors"]) expected[t["name"]] = t;
  REQUIRE(theirs.size() == expected.size());
  for (const auto& [n, t] : theirs) {
    INFO(n);
    CHECK(dtype_name(t) == expected[n]["dtype"].get<std::string>());
    CHECK(bits(t) == expected[n]["bits"].get<std::vector<int64_t>>());
  }
}

TEST_CASE("safetensors: damaged files are rejected naming the tensor", "[io]") {
  TempDir dir("rwkv-st");
  const auto file = dir / "a.safetensors";
  rwkv::io::write_safetensors(file, {{"first", torch::randn({16})}, {"second", torch::randn({8, 8})}});
  const auto size = std::filesystem::file_size(file);

  SECTION("truncated data names the tensor that runs past the end") {
    truncate_to(file, size - 4);
    CHECK_THAT(error_of([&] { rwkv::io::read_safetensors(file); }),
               Catch::Contains("tensor 'second'") && Catch::Contains("truncated"));
  }
  SECTION("truncated inside the header") {
    truncate_to(file, 20);
    CHECK_THAT(error_of([&] { rwkv::io::read_safetensors(file); }), Catch::Contains("header length"));
  }
  SECTION("a shape that disagrees with the byte range names the tensor") {
    std::string bytes;
    {
      std::ifstream f(file, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(f), {});
    }
    const auto at = bytes.find("[8,8]");
    REQUIRE(at != std::string::npos);
    bytes.replace(at, 5, "[8,9]");
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    CHECK_THAT(error_of([&] { rwkv::io::read_safetensors(file); }),
               Catch::Contains("tensor 'second'") && Catch::Contains("needs"));
  }
  SECTION("trailing bytes no tensor claims") {
    std::ofstream(file, std::ios::binary | std::ios::app) << "xxxx";
    CHECK_THAT(error_of([&] { rwkv::io::read_safetensors(file); }), Catch::Contains("cover"));
  }
}
