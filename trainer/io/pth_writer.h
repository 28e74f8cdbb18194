#pragma once
// Writes a PyTorch .pth file the way Python's torch.save writes a plain dict of tensors: the zip
// container (PyTorchStreamWriter) with a protocol-2 pickle of {name: tensor} and one storage record
// per tensor. Python's `torch.load(path, weights_only=True)` returns exactly that dict, which is
// what the `rwkv` package, ChatRWKV and rwkv.cpp's converter read (trainer/README.md "Checkpoints").
//
// LibTorch's own torch::pickle_save tags the dict with torch.jit._pickle.restore_type_tag, which
// the weights-only unpickler refuses; this writer emits only globals it allows.
#include <filesystem>
#include <optional>

#include "common/progress.h"
#include "trainer/io/weight_dtype.h"

namespace rwkv::io {

// Streams `tensors` into `path` in the given order, each converted to `dtype` (or kept in its own
// dtype when none is given) just before its bytes are written. The file is written under a
// temporary name in the same folder and renamed onto `path` only when complete; on failure the
// temporary is removed and an existing `path` is left untouched. Names must be unique.
// `progress` gets the tensor bytes written so far and their total, before the first and after each.
void write_pth(const std::filesystem::path& path, const NamedTensors& tensors,
               std::optional<torch::ScalarType> dtype = std::nullopt, const ProgressCallback& progress = {});

}  // namespace rwkv::io
