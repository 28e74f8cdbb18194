#include "trainer/io/safetensors_file.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/durable_file.h"

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

// The dtype codes of the format (safetensors' Dtype enum).
const std::vector<std::pair<std::string, torch::ScalarType>>& dtype_codes() {
  static const std::vector<std::pair<std::string, torch::ScalarType>> table = {
      {"F32", torch::kFloat32}, {"BF16", torch::kBFloat16}, {"F16", torch::kFloat16},
      {"F64", torch::kFloat64}, {"I64", torch::kInt64},     {"I32", torch::kInt32},
      {"I16", torch::kInt16},   {"I8", torch::kInt8},       {"U8", torch::kUInt8},
      {"BOOL", torch::kBool},
  };
  return table;
}

std::string dtype_code(torch::ScalarType dtype) {
  for (const auto& [code, t] : dtype_codes())
    if (t == dtype) return code;
  throw std::invalid_argument(fmt::format("no safetensors dtype for {}", c10::toString(dtype)));
}

// A header is tiny next to the weights; a length beyond this is a corrupt file, not a big model.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

}  // namespace

void write_safetensors(const fs::path& path, const NamedTensors& tensors,
                       std::optional<torch::ScalarType> dtype, const ProgressCallback& progress,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::unordered_set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || !seen.insert(name).second)
      throw std::invalid_argument(fmt::format("{}: tensor name '{}' is reserved or given twice",
                                              path.string(), name));
    const torch::ScalarType t = dtype.value_or(tensor.scalar_type());
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * c10::elementSize(t);
    header[name] = {{"dtype", dtype_code(t)},
                    {"shape", tensor.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned

  write_durably(path, [&](const fs::path& temp) {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    if (!file) throw std::runtime_error(fmt::format("{}: cannot open for writing", temp.string()));
    const uint64_t n = json.size();
    char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    file.write(length, 8);
    file.write(json.data(), static_cast<std::streamsize>(json.size()));
    int64_t done_bytes = 0;
    if (progress) progress(done_bytes, static_cast<int64_t>(offset));
    for (const auto& [name, src] : tensors) {
      const torch::Tensor t = to_cpu_contiguous(src, dtype.value_or(src.scalar_type()));
      file.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
      if (!file)
        throw std::runtime_error(
            fmt::format("{}: write failed at tensor '{}' (disk full?)", path.string(), name));
      done_bytes += static_cast<int64_t>(t.nbytes());
      if (progress) progress(done_bytes, static_cast<int64_t>(offset));
    }
    file.close();
    if (!file) throw std::runtime_error(fmt::format("{}: write failed (disk full?)", path.string()));
  });
}

SafetensorsReader::SafetensorsReader(const fs::path& path) : path_(path) {
  const std::string label = path.string();
  const auto fail = [&](const std::string& what) {
    throw std::runtime_error(fmt::format("{}: {}", label, what));
  };
  if (!fs::is_regular_file(path)) fail("no such file");
  file_.open(path, std::ios::binary);
  if (!file_) fail("cannot open for reading");
  const uint64_t file_size = fs::file_size(path);
  if (file_size < 8) fail("shorter than the 8-byte header length (not a safetensors file)");
  unsigned char length[8];
  file_.read(reinterpret_cast<char*>(length), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | length[i];
  if (n > kMaxHeaderBytes || n > file_size - 8)
    fail(fmt::format("header length {} exceeds the file size {} (truncated or not safetensors)", n, file_size));
  std::string json(n, '\0');
  file_.read(json.data(), static_cast<std::streamsize>(n));
  data_start_ = 8 + n;
  const uint64_t data_size = file_size - data_start_;

  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    fail(fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) fail("header is not a JSON object");

  for (const auto& item : header.items()) {
    // Named, not a structured binding: lambdas may not capture bindings before clang 16 (the
    // sanitizer build of tests/fuzz compiles this file with clang 14).
    const std::string& name = item.key();
    const auto& info = item.value();
    const auto bad = [&](const std::string& what) {
      throw std::runtime_error(fmt::format("{}: tensor '{}': {}", label, name, what));
    };
    if (name == "__metadata__") {
      if (!info.is_object()) fail("__metadata__ is not an object");
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) fail(fmt::format("__metadata__ entry '{}' is not a string", k));
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") ||
        !info.contains("data_offsets"))
      bad("entry lacks dtype, shape or data_offsets");
    SafetensorsEntry e;
    e.name = name;
    const auto& code = info["dtype"];
    const auto it = std::find_if(dtype_codes().begin(), dtype_codes().end(),
                                 [&](const auto& p) { return code.is_string() && p.first == code.get<std::string>(); });
    if (it == dtype_codes().end()) bad(fmt::format("unsupported dtype {}", code.dump()));
    e.dtype = it->second;
    const auto& shape = info["shape"];
    if (!shape.is_array()) bad("shape is not an array");
    uint64_t numel = 1, bytes = 0;
    for (const auto& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) bad(fmt::format("bad shape {}", shape.dump()));
      e.shape.push_back(d.get<int64_t>());
      // A product that wraps around 2^64 could match small data_offsets and then ask for an
      // impossible allocation.
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(e.shape.back()), &numel))
        bad(fmt::format("shape {} has more elements than 2^64", shape.dump()));
    }
    if (__builtin_mul_overflow(numel, c10::elementSize(e.dtype), &bytes) || bytes > data_size)
      bad(fmt::format("shape {} needs more bytes than the file's {} data bytes", shape.dump(), data_size));
    const auto& off = info["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad(fmt::format("data_offsets {} is not [begin, end]", off.dump()));
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.end < e.begin || e.end - e.begin != bytes)
      bad(fmt::format("data_offsets {} hold {} bytes, shape {} of {} needs {}", off.dump(),
                      e.end >= e.begin ? e.end - e.begin : 0, shape.dump(), code.get<std::string>(), bytes));
    if (e.end > data_size)
      bad(fmt::format("data ends at byte {} but the file holds only {} data bytes (truncated file)",
                      e.end, data_size));
    entries_.push_back(std::move(e));
  }
  std::sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const auto& e : entries_) {
    if (e.begin != expected)
      throw std::runtime_error(fmt::format("{}: tensor '{}': data starts at byte {}, expected {} "
                                           "(tensors overlap or leave a gap)", label, e.name, e.begin, expected));
    expected = e.end;
  }
  if (expected != data_size)
    fail(fmt::format("the tensors cover {} data bytes but the file holds {}", expected, data_size));
}

torch::Tensor SafetensorsReader::read(const SafetensorsEntry& e) {
  torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype));
  file_.clear();
  file_.seekg(static_cast<std::streamoff>(data_start_ + e.begin));
  file_.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
  if (!file_)
    throw std::runtime_error(fmt::format("{}: tensor '{}': read failed (file changed or truncated?)",
                                         path_.string(), e.name));
  return t;
}

void SafetensorsReader::read_into(const SafetensorsEntry& e, int64_t first, torch::Tensor& out) {
  const uint64_t size = c10::elementSize(e.dtype), begin = e.begin + static_cast<uint64_t>(first) * size;
  if (first < 0 || out.scalar_type() != e.dtype || !out.is_contiguous() || !out.device().is_cpu() ||
      begin + static_cast<uint64_t>(out.numel()) * size > e.end)
    throw std::invalid_argument(fmt::format("{}: tensor '{}': elements [{}, {}) of {} {} asked for", path_.string(),
                                            e.name, first, first + out.numel(), (e.end - e.begin) / size,
                                            c10::toString(e.dtype)));
  file_.clear();
  file_.seekg(static_cast<std::streamoff>(data_start_ + begin));
  file_.read(static_cast<char*>(out.data_ptr()), static_cast<std::streamsize>(out.nbytes()));
  if (!file_)
    throw std::runtime_error(fmt::format("{}: tensor '{}': read failed (file changed or truncated?)",
                                         path_.string(), e.name));
}

NamedTensors read_safetensors(const fs::path& path) {
  SafetensorsReader reader(path);
  NamedTensors out;
  out.reserve(reader.entries().size());
  for (const auto& e : reader.entries()) out.push_back({e.name, reader.read(e)});
  return out;
}

}  // namespace rwkv::io
