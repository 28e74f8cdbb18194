#pragma once
// Reads PyTorch zip-container .pth files holding a dict (or collections.OrderedDict) of tensors, as
// Python's torch.save writes them: released RWKV checkpoints (bf16, reference keys), our own
// export, transformers' pytorch_model.bin. Tensors are read one at a time on request, so a caller
// converting a large file never holds two copies of it.
#include <filesystem>
#include <memory>
#include <vector>

#include "trainer/io/weight_dtype.h"
#include "trainer/io/state_dict_unpickler.h"

namespace caffe2::serialize { class PyTorchStreamReader; }

namespace rwkv::io {

class PthReader {
 public:
  // Opens the zip and parses data.pkl; checks every tensor's declared storage against the zip
  // (record present, byte size = numel × element size, view inside the storage). Throws naming the
  // file and the tensor.
  explicit PthReader(const std::filesystem::path& path);
  ~PthReader();
  PthReader(const PthReader&) = delete;
  PthReader& operator=(const PthReader&) = delete;

  // The tensors in file order (metadata only).
  const std::vector<PickledTensor>& entries() const { return entries_; }

  // Reads one tensor as a contiguous CPU tensor of its stored dtype.
  torch::Tensor read(const PickledTensor& entry);

 private:
  std::filesystem::path path_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip_;
  std::vector<PickledTensor> entries_;
};

// The whole file, in file order.
NamedTensors read_pth(const std::filesystem::path& path);

}  // namespace rwkv::io
