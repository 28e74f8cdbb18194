#include "trainer/pth_reader.h"

#include <caffe2/serialize/inline_container.h>

#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

// c10::Error messages carry a C++ backtrace; keep the first line for the user.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

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
