#include "trainer/io/pth_reader.h"

#include <caffe2/serialize/inline_container.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

// c10::Error messages carry a C++ backtrace; keep the first line for the user.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// CRC-32 (IEEE 802.3, as zip uses). The miniz inside libtorch is built without CRC checks on
// extraction, so a flipped byte in a tensor would otherwise load silently.
uint32_t crc32(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// The CRC-32 the zip declares for a stored record: in its local header, or, when the writer set
// flag bit 3 (PyTorchStreamWriter does), in the data descriptor right after the data (optionally
// preceded by the signature PK\7\8). nullopt when the bytes there are not a zip header.
std::optional<uint32_t> declared_crc32(const fs::path& path, uint64_t header_offset, uint64_t data_end) {
  std::ifstream f(path, std::ios::binary);
  const auto u32_at = [&](uint64_t at, int bytes) -> std::optional<uint32_t> {
    unsigned char b[4] = {};
    f.clear();
    f.seekg(static_cast<std::streamoff>(at));
    f.read(reinterpret_cast<char*>(b), bytes);
    if (!f) return std::nullopt;
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[i];
    return v;
  };
  if (u32_at(header_offset, 4) != 0x04034b50u) return std::nullopt;
  const auto flags = u32_at(header_offset + 6, 2);
  if (!flags) return std::nullopt;
  if (!(*flags & 0x8)) return u32_at(header_offset + 14, 4);
  const auto first = u32_at(data_end, 4);
  if (first == 0x08074b50u) return u32_at(data_end + 4, 4);
  return first;
}

std::string join(const std::vector<int64_t>& v) {
  return fmt::format("({})", fmt::join(v, ", "));
}

}  // namespace

PthReader::PthReader(const fs::path& path) : path_(path) {
  const std::string label = path.string();
  if (!fs::is_regular_file(path)) throw std::runtime_error(fmt::format("{}: no such file", label));
  {
    // torch.save's zip format starts with a local file header; the pre-1.6 legacy format (a bare
    // pickle stream) is not read.
    std::ifstream f(path, std::ios::binary);
    char magic[4] = {};
    f.read(magic, 4);
    if (f.gcount() != 4 || std::string(magic, 4) != std::string("PK\x03\x04", 4))
      throw std::runtime_error(fmt::format(
          "{}: not a PyTorch zip checkpoint (no zip header; legacy pre-1.6 torch.save files are "
          "not supported, re-save them with a current torch)", label));
  }
  try {
    zip_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path.string());
  } catch (const c10::Error& e) {
    throw std::runtime_error(fmt::format("{}: cannot open as a PyTorch zip checkpoint (truncated or "
                                         "corrupt?): {}", label, first_line(e.what_without_backtrace())));
  }
  if (zip_->hasRecord("byteorder")) {
    auto [data, size] = zip_->getRecord("byteorder");
    const std::string order(static_cast<const char*>(data.get()), size);
    if (order != "little")
      throw std::runtime_error(fmt::format("{}: byte order '{}' is not supported", label, order));
  }
  if (!zip_->hasRecord("data.pkl"))
    throw std::runtime_error(fmt::format("{}: no data.pkl record (not a torch.save file)", label));
  std::string pickle;
  try {
    auto [data, size] = zip_->getRecord("data.pkl");
    pickle.assign(static_cast<const char*>(data.get()), size);
  } catch (const c10::Error& e) {
    throw std::runtime_error(fmt::format("{}: cannot read data.pkl: {}", label,
                                         first_line(e.what_without_backtrace())));
  }
  entries_ = unpickle_state_dict(pickle, label);

  for (const PickledTensor& e : entries_) {
    const std::string record = "data/" + e.storage_key;
    const auto fail = [&](const std::string& what) {
      throw std::runtime_error(fmt::format("{}: tensor '{}': {}", label, e.name, what));
    };
    if (!zip_->hasRecord(record)) fail(fmt::format("its storage record {} is missing", record));
    const size_t element = c10::elementSize(e.dtype);
    const size_t bytes = zip_->getRecordSize(record);
    if (e.storage_numel < 0 || bytes != static_cast<size_t>(e.storage_numel) * element)
      fail(fmt::format("storage {} holds {} bytes, the pickle declares {} × {}-byte elements "
                       "(truncated or corrupt file)", record, bytes, e.storage_numel, element));
    // The furthest element the view touches must lie inside the storage.
    int64_t last = e.storage_offset;
    bool empty = false;
    for (size_t d = 0; d < e.sizes.size(); ++d) {
      if (e.sizes[d] < 0 || e.strides[d] < 0)
        fail(fmt::format("negative size or stride {} / {}", join(e.sizes), join(e.strides)));
      if (e.sizes[d] == 0) empty = true;
      else last += (e.sizes[d] - 1) * e.strides[d];
    }
    if (e.storage_offset < 0 || (!empty && last >= e.storage_numel))
      fail(fmt::format("shape {} with stride {} at offset {} reaches past its storage of {} elements",
                       join(e.sizes), join(e.strides), e.storage_offset, e.storage_numel));
  }
}

PthReader::~PthReader() = default;

torch::Tensor PthReader::read(const PickledTensor& e) {
  const std::string record = "data/" + e.storage_key;
  torch::Tensor storage = torch::empty({e.storage_numel}, torch::TensorOptions().dtype(e.dtype));
  try {
    zip_->getRecord(record, storage.data_ptr(), storage.nbytes());
  } catch (const c10::Error& ex) {
    throw std::runtime_error(fmt::format("{}: tensor '{}': cannot read storage {} (corrupt file?): {}",
                                         path_.string(), e.name, record,
                                         first_line(ex.what_without_backtrace())));
  }
  const auto declared = declared_crc32(path_, zip_->getRecordHeaderOffset(record),
                                       zip_->getRecordOffset(record) + storage.nbytes());
  if (declared && *declared != crc32(storage.data_ptr(), storage.nbytes()))
    throw std::runtime_error(fmt::format("{}: tensor '{}': storage {} fails its CRC-32 check (corrupt file)",
                                         path_.string(), e.name, record));
  torch::Tensor view = storage.as_strided(e.sizes, e.strides, e.storage_offset);
  if (view.is_contiguous() && view.numel() == storage.numel()) return view;
  // A view of a larger or shared storage: keep only its own elements.
  return view.clone(at::MemoryFormat::Contiguous);
}

NamedTensors read_pth(const fs::path& path) {
  PthReader reader(path);
  NamedTensors out;
  out.reserve(reader.entries().size());
  for (const auto& e : reader.entries()) out.push_back({e.name, reader.read(e)});
  return out;
}

}  // namespace rwkv::io
