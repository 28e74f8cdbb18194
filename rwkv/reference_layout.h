#pragma once
// The reference implementation's state_dict layout (rwkv/README.md "Forward pass"): the exact keys and shapes that
// the .pth export writes and the import expects, in the reference's own order (emb, blocks in
// module order, ln_out, head). The `rwkv` package, ChatRWKV and rwkv.cpp read this layout.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rwkv/model_config.h"

namespace rwkv {

struct TensorShape {
  std::string name;
  std::vector<int64_t> shape;
};

// Every key of a model with config `c`, in reference order.
std::vector<TensorShape> reference_layout(const ModelConfig& c);

// Reads L, D, V, A, F off the shapes of emb.weight, att.key.weight and ffn.key.weight and the
// highest block index. `names_shapes` is a file's content; `source` labels errors. Throws when the
// tensors needed to tell the shape are missing.
ModelConfig infer_model_config(const std::vector<TensorShape>& names_shapes, const std::string& source);

// Throws one message listing every missing key, unexpected key and shape mismatch against
// reference_layout(c) (up to a few of each kind), naming `source`.
void check_reference_layout(const std::vector<TensorShape>& names_shapes, const ModelConfig& c,
                            const std::string& source);

// The check behind it, against any expected layout (`model` says what `want` is, for the message):
// the one "do these tensors fit" test of the project (load_weights in rwkv/named_tensors.h uses it).
void check_layout(const std::vector<TensorShape>& got, const std::vector<TensorShape>& want, const std::string& source,
                  const std::string& model);

}  // namespace rwkv
