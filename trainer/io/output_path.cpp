#include "trainer/io/output_path.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

std::string first_bytes(const fs::path& file, size_t n) {
  std::ifstream in(file, std::ios::binary);
  std::string bytes(n, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(n));
  bytes.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return bytes;
}

bool starts_with(const fs::path& file, std::string_view magic) {
  return first_bytes(file, magic.size()) == magic;
}

// safetensors: a u64 header length that fits the file, then the JSON header's '{'.
bool looks_like_safetensors(const fs::path& file) {
  const std::string head = first_bytes(file, 9);
  if (head.size() < 9 || head[8] != '{') return false;
  uint64_t n = 0;
  std::memcpy(&n, head.data(), 8);
  return n <= fs::file_size(file) - 8;
}

bool looks_like_json(const fs::path& file) {
  const std::string head = first_bytes(file, 4096);
  const size_t i = head.find_first_not_of(" \t\r\n");
  return i == std::string::npos || head[i] == '{' || head[i] == '[';
}

// Whether `path` (which exists) holds what a command writing `kind` writes there.
bool is_ours(const fs::path& path, OutputKind kind) {
  using namespace std::string_view_literals;
  switch (kind) {
    case OutputKind::hf_folder: return fs::is_directory(path) && fs::exists(path / kOutputMarker);
    case OutputKind::pth: return starts_with(path, "PK\x03\x04"sv);
    case OutputKind::safetensors: return looks_like_safetensors(path);
    case OutputKind::hdf5: return starts_with(path, "\x89HDF\r\n\x1a\n"sv);
    case OutputKind::json: return looks_like_json(path);
    case OutputKind::binidx: break;  // checked as its two files in check_output_path
  }
  return false;
}

const char* what_is_ours(OutputKind kind) {
  switch (kind) {
    case OutputKind::hf_folder: return "a folder with the marker file .rwkv-output that our exports write";
    case OutputKind::pth: return "a .pth (zip) file";
    case OutputKind::safetensors: return "a safetensors file";
    case OutputKind::hdf5: return "an HDF5 file";
    case OutputKind::json: return "a JSON file";
    case OutputKind::binidx: return "a binidx .bin/.idx pair (MMIDIDX index)";
  }
  return "";
}

fs::path canonical_of(const fs::path& p) { return fs::weakly_canonical(fs::absolute(p)); }

// Whether `inside` is `folder` or lies below it (both canonical).
bool holds(const fs::path& folder, const fs::path& inside) {
  const auto [f, i] = std::mismatch(folder.begin(), folder.end(), inside.begin(), inside.end());
  return f == folder.end();
}

[[noreturn]] void refuse(const std::string& option, const fs::path& path, const std::string& why) {
  throw OutputRefused(fmt::format("{} {}: {}", option, path.string(), why));
}

// One output path; `ours` says whether its existing content may be replaced under --force.
void check_one(const fs::path& path, bool folder, bool force, bool ours, const char* expected,
               const std::vector<fs::path>& inputs, const std::string& option) {
  const fs::path target = canonical_of(path);
  for (const auto& input : inputs)
    if (holds(target, canonical_of(input)))
      refuse(option, path,
             fmt::format("{} the input {}; an output never replaces what the command reads: choose another path",
                         target == canonical_of(input) ? "is" : "holds", input.string()));
  const fs::file_status st = fs::status(path);
  for (const auto& input : inputs)
    if (fs::exists(st) && holds(canonical_of(input), target))
      refuse(option, path,
             fmt::format("exists inside the input {}; an output never replaces part of what the command reads: "
                         "choose a new name",
                         input.string()));
  if (!fs::exists(st)) {
    const fs::path parent = target.parent_path();
    if (!fs::is_directory(parent)) refuse(option, path, fmt::format("its folder {} does not exist", parent.string()));
    return;
  }
  if (folder && !fs::is_directory(st)) refuse(option, path, "exists and is not a folder; choose another path");
  if (!folder && fs::is_directory(st)) refuse(option, path, "is a folder; give a file name");
  if (!force)
    refuse(option, path, "already exists; pass --force to replace it (only an earlier output of ours is replaced)");
  if (!ours)
    refuse(option, path,
           fmt::format("exists and is not an earlier output of ours (expected {}); not replaced even with --force: "
                       "move it away or choose another path",
                       expected));
}

}  // namespace

void check_output_path(const fs::path& out, OutputKind kind, bool force, const std::vector<fs::path>& inputs,
                       const std::string& option) {
  const char* expected = what_is_ours(kind);
  if (kind != OutputKind::binidx) {
    const bool ours = fs::exists(out) && is_ours(out, kind);
    check_one(out, kind == OutputKind::hf_folder, force, ours, expected, inputs, option);
    return;
  }
  // A pair is ours when its index has the MMIDIDX magic; a .bin alone is nobody's we know.
  const fs::path bin = out.string() + ".bin", idx = out.string() + ".idx";
  const bool idx_ours = fs::is_regular_file(idx) && starts_with(idx, std::string_view("MMIDIDX\0\0", 9));
  check_one(idx, false, force, idx_ours, expected, inputs, option);
  check_one(bin, false, force, idx_ours, expected, inputs, option);
}

}  // namespace rwkv::io
