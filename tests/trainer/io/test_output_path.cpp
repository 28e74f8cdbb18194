// check_output_path (trainer/io/output_path.h): an existing output needs --force, --force
// replaces only an earlier output of ours, and an input (or a folder holding one) is never an
// output.
#include <catch2/catch.hpp>

#include <fstream>

#include "trainer/io/output_path.h"
#include "trainer/io/pth_writer.h"
#include "tests/support/test_util.h"

using rwkv::io::check_output_path;
using rwkv::io::OutputKind;
namespace fs = std::filesystem;

namespace {

std::string refusal(const fs::path& out, OutputKind kind, bool force, const std::vector<fs::path>& inputs = {}) {
  try {
    check_output_path(out, kind, force, inputs, "--out");
  } catch (const rwkv::io::OutputRefused& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("an output path that exists needs --force, and --force replaces only our own outputs", "[io]") {
  rwkv::test::TempDir dir("rwkv-outpath");
  CHECK(refusal(dir / "new.pth", OutputKind::pth, false).empty());
  CHECK_THAT(refusal(dir / "no-such-dir" / "x.pth", OutputKind::pth, true), Catch::Contains("does not exist"));

  std::ofstream(dir / "notes.txt") << "the user's notes\n";
  CHECK_THAT(refusal(dir / "notes.txt", OutputKind::pth, false), Catch::Contains("already exists; pass --force"));
  CHECK_THAT(refusal(dir / "notes.txt", OutputKind::pth, true),
             Catch::Contains("is not an earlier output of ours") && Catch::Contains("not replaced even with --force"));
  CHECK_THAT(refusal(dir / "notes.txt", OutputKind::json, true), Catch::Contains("not an earlier output of ours"));
  CHECK_THAT(refusal(dir / "notes.txt", OutputKind::hf_folder, true), Catch::Contains("is not a folder"));

  rwkv::io::write_pth(dir / "ours.pth", {{"w", torch::ones({2})}});
  CHECK_THAT(refusal(dir / "ours.pth", OutputKind::pth, false), Catch::Contains("pass --force"));
  CHECK(refusal(dir / "ours.pth", OutputKind::pth, true).empty());
  CHECK_THAT(refusal(dir / "ours.pth", OutputKind::safetensors, true), Catch::Contains("not an earlier output"));

  std::ofstream(dir / "figures.json") << "  {\"a\": 1}";
  CHECK(refusal(dir / "figures.json", OutputKind::json, true).empty());

  // folders: only one holding our marker is replaced
  fs::create_directories(dir / "photos");
  std::ofstream(dir / "photos" / "cat.jpg") << "meow";
  CHECK_THAT(refusal(dir / "photos", OutputKind::hf_folder, true), Catch::Contains("not an earlier output of ours"));
  CHECK_THAT(refusal(dir / "photos", OutputKind::pth, true), Catch::Contains("is a folder"));
  fs::create_directories(dir / "hf");
  std::ofstream(dir / "hf" / rwkv::io::kOutputMarker) << "";
  CHECK_THAT(refusal(dir / "hf", OutputKind::hf_folder, false), Catch::Contains("pass --force"));
  CHECK(refusal(dir / "hf", OutputKind::hf_folder, true).empty());
}

TEST_CASE("an output never replaces an input or a folder that holds one, --force or not", "[io]") {
  rwkv::test::TempDir dir("rwkv-outpath-input");
  fs::create_directories(dir / "run" / "checkpoints" / "step-00000001");
  std::ofstream(dir / "run" / rwkv::io::kOutputMarker) << "";  // even a folder marked as ours
  const fs::path source = dir / "run" / "checkpoints" / "step-00000001";
  CHECK_THAT(refusal(dir / "run", OutputKind::hf_folder, true, {source}),
             Catch::Contains("holds the input") && Catch::Contains("choose another path"));
  CHECK_THAT(refusal(source, OutputKind::hf_folder, true, {source}), Catch::Contains("is the input"));
  CHECK_THAT(refusal(dir / "run" / "checkpoints" / ".." / "checkpoints", OutputKind::hf_folder, true, {source}),
             Catch::Contains("holds the input"));
  // a new output inside the input's folder is fine, an existing file there is not
  CHECK(refusal(dir / "run" / "export.pth", OutputKind::pth, false, {dir / "run"}).empty());
  rwkv::io::write_pth(source / "weights.pt", {{"w", torch::ones({2})}});
  CHECK_THAT(refusal(source / "weights.pt", OutputKind::pth, true, {dir / "run"}),
             Catch::Contains("exists inside the input"));
}

TEST_CASE("a binidx output checks both files: an index of ours makes the pair ours", "[io]") {
  rwkv::test::TempDir dir("rwkv-outpath-binidx");
  CHECK(refusal(dir / "tok", OutputKind::binidx, false).empty());
  std::ofstream(dir / "tok.bin") << "tokens";
  CHECK_THAT(refusal(dir / "tok", OutputKind::binidx, true), Catch::Contains("tok.bin") && Catch::Contains("MMIDIDX"));
  std::ofstream(dir / "tok.idx", std::ios::binary).write("MMIDIDX\0\0", 9);
  CHECK_THAT(refusal(dir / "tok", OutputKind::binidx, false), Catch::Contains("tok.idx: already exists"));
  CHECK(refusal(dir / "tok", OutputKind::binidx, true).empty());
}
