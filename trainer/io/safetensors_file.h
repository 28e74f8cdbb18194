#pragma once
// The safetensors format (huggingface/safetensors, "Format" in its README): an 8-byte little-endian
// header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, …,
// "__metadata__": {string: string}} padded with spaces to a multiple of 8, then the tensors' bytes
// back to back (offsets relative to the end of the header). Written and read here without Python.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/progress.h"
#include "trainer/io/weight_dtype.h"

namespace rwkv::io {

// Streams `tensors` into `path` in the given order, each converted to `dtype` (or its own dtype)
// just before it is written; temporary name, renamed when complete. transformers expects
// metadata {"format": "pt"}. `progress` gets the tensor bytes written so far and their total,
// before the first and after each.
void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       std::optional<torch::ScalarType> dtype = std::nullopt, const ProgressCallback& progress = {},
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

struct SafetensorsEntry {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
};

class SafetensorsReader {
 public:
  // Parses and validates the header: known dtypes, byte ranges matching the shapes, ranges that
  // tile the data section exactly (no gap, no overlap, nothing missing at the end, as the
  // reference implementation requires). Throws naming the file and the tensor.
  explicit SafetensorsReader(const std::filesystem::path& path);

  // Tensors in data order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads one tensor as a contiguous CPU tensor of its stored dtype.
  torch::Tensor read(const SafetensorsEntry& entry);
  // Reads elements [first, first + out.numel()) of the flattened tensor into `out` (a contiguous
  // CPU tensor of the entry's dtype), touching only those bytes of the file.
  void read_into(const SafetensorsEntry& entry, int64_t first, torch::Tensor& out);

 private:
  std::filesystem::path path_;
  std::ifstream file_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The whole file, in data order.
NamedTensors read_safetensors(const std::filesystem::path& path);

}  // namespace rwkv::io
