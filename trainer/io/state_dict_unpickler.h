#pragma once
// Reads the data.pkl of a torch.save'd state dict: a dict or collections.OrderedDict from names to
// tensors (how released RWKV .pth files are saved). LibTorch's pickle_load cannot rebuild an
// OrderedDict, so this is a small unpickler for exactly the pickle subset torch.save emits for such
// a dict (protocol 2; the few protocol-4 opcodes newer Pythons use for the same objects), with an
// error naming the byte offset and opcode for anything else. It returns tensor metadata only;
// PthReader (pth_reader.h) fetches the storage bytes.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

namespace rwkv::io {

struct PickledTensor {
  std::string name;          // the dict key
  std::string storage_key;   // the zip record data/<storage_key>
  torch::ScalarType dtype;   // from the storage class (torch.FloatStorage → kFloat32, …)
  int64_t storage_numel = 0; // elements in the storage, as the pickle declares
  int64_t storage_offset = 0;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
};

// Parses `pickle` (the bytes of data.pkl); `label` (e.g. the file name) prefixes every error.
// Throws std::runtime_error on malformed or truncated input, unsupported opcodes or callables,
// non-string keys and non-tensor values (naming the key).
std::vector<PickledTensor> unpickle_state_dict(std::string_view pickle, const std::string& label);

}  // namespace rwkv::io
