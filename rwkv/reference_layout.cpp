#include "rwkv/reference_layout.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace rwkv {

std::vector<TensorShape> reference_layout(const ModelConfig& c) {
  const int64_t D = c.n_embd, A = c.att(), F = c.ffn(), V = c.vocab_size;
  std::vector<TensorShape> out;
  out.push_back({"emb.weight", {V, D}});
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = fmt::format("blocks.{}.", l);
    // Module order of the reference Block: ln1, ln2, (ln0 in block 0), att, ffn.
    for (const char* ln : {"ln1", "ln2"}) {
      out.push_back({b + ln + ".weight", {D}});
      out.push_back({b + ln + ".bias", {D}});
    }
    if (l == 0) {
      out.push_back({b + "ln0.weight", {D}});
      out.push_back({b + "ln0.bias", {D}});
    }
    out.push_back({b + "att.time_decay", {A}});
    out.push_back({b + "att.time_first", {A}});
    for (const char* mix : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r"})
      out.push_back({b + mix, {1, 1, D}});
    for (const char* w : {"att.key.weight", "att.value.weight", "att.receptance.weight"})
      out.push_back({b + w, {A, D}});
    out.push_back({b + "att.output.weight", {D, A}});
    out.push_back({b + "ffn.time_mix_k", {1, 1, D}});
    out.push_back({b + "ffn.time_mix_r", {1, 1, D}});
    out.push_back({b + "ffn.key.weight", {F, D}});
    out.push_back({b + "ffn.receptance.weight", {D, D}});
    out.push_back({b + "ffn.value.weight", {D, F}});
  }
  out.push_back({"ln_out.weight", {D}});
  out.push_back({"ln_out.bias", {D}});
  out.push_back({"head.weight", {V, D}});
  return out;
}

ModelConfig infer_model_config(const std::vector<TensorShape>& names_shapes, const std::string& source) {
  std::map<std::string, std::vector<int64_t>> shapes;
  int64_t max_block = -1;
  for (const auto& t : names_shapes) {
    shapes[t.name] = t.shape;
    if (t.name.rfind("blocks.", 0) == 0) {
      const size_t dot = t.name.find('.', 7);
      try {
        max_block = std::max<int64_t>(max_block, std::stoll(t.name.substr(7, dot - 7)));
      } catch (const std::exception&) {
        throw std::runtime_error(fmt::format("{}: '{}' has no block number", source, t.name));
      }
    }
  }
  const auto need = [&](const std::string& name) -> const std::vector<int64_t>& {
    const auto it = shapes.find(name);
    if (it == shapes.end())
      throw std::runtime_error(fmt::format("{}: tensor '{}' is missing (needed to tell the model size; "
                                           "is this an RWKV-4 checkpoint with reference keys?)", source, name));
    if (it->second.size() != 2)
      throw std::runtime_error(fmt::format("{}: tensor '{}' has {} dimensions, expected 2", source, name,
                                           it->second.size()));
    return it->second;
  };
  ModelConfig c;
  c.vocab_size = need("emb.weight")[0];
  c.n_embd = need("emb.weight")[1];
  c.n_layer = max_block + 1;
  if (c.n_layer < 1) throw std::runtime_error(fmt::format("{}: no blocks.N.* tensors", source));
  c.dim_att = need("blocks.0.att.key.weight")[0];
  c.dim_ffn = need("blocks.0.ffn.key.weight")[0];
  return c;
}

void check_reference_layout(const std::vector<TensorShape>& names_shapes, const ModelConfig& c,
                            const std::string& source) {
  check_layout(names_shapes, reference_layout(c), source,
               fmt::format("an RWKV-4 model with n_layer {}, n_embd {}, vocab_size {}, dim_att {}, dim_ffn {}",
                           c.n_layer, c.n_embd, c.vocab_size, c.att(), c.ffn()));
}

void check_layout(const std::vector<TensorShape>& got, const std::vector<TensorShape>& want, const std::string& source,
                  const std::string& model) {
  constexpr size_t kShown = 5;  // per kind of problem; the count says how many there are in all
  std::map<std::string, std::vector<int64_t>> expected;
  for (auto& t : want) expected[t.name] = t.shape;
  std::vector<std::string> unexpected, mismatched, missing;
  std::map<std::string, bool> present;
  for (const auto& t : got) {
    if (present[t.name]) unexpected.push_back(fmt::format("'{}' (a second time)", t.name));
    present[t.name] = true;
    const auto it = expected.find(t.name);
    if (it == expected.end()) unexpected.push_back(fmt::format("'{}'", t.name));
    else if (it->second != t.shape)
      mismatched.push_back(fmt::format("'{}' has shape ({}), expected ({})", t.name, fmt::join(t.shape, ", "),
                                       fmt::join(it->second, ", ")));
  }
  for (const auto& t : want)
    if (!present.count(t.name)) missing.push_back(fmt::format("'{}'", t.name));
  if (unexpected.empty() && mismatched.empty() && missing.empty()) return;
  std::string msg = fmt::format("{}: does not match {}:", source, model);
  const auto list = [&](const char* what, const std::vector<std::string>& items) {
    if (items.empty()) return;
    msg += fmt::format("\n  {} {}: ", items.size(), what);
    for (size_t i = 0; i < items.size() && i < kShown; ++i) msg += (i ? "; " : "") + items[i];
    if (items.size() > kShown) msg += "; …";
  };
  list("tensor(s) with the wrong shape", mismatched);
  list("missing tensor(s)", missing);
  list("unexpected tensor(s)", unexpected);
  throw std::runtime_error(msg);
}

}  // namespace rwkv
