#include "rwkv/hf_naming.h"

#include <array>
#include <cctype>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace rwkv {

namespace {

using Pair = std::pair<const char*, const char*>;  // {reference, transformers}

constexpr std::array<Pair, 4> kTopLevel = {{
    {"emb.weight", "rwkv.embeddings.weight"},
    {"ln_out.weight", "rwkv.ln_out.weight"},
    {"ln_out.bias", "rwkv.ln_out.bias"},
    {"head.weight", "head.weight"},
}};

// Inside blocks.N. (reference) ↔ rwkv.blocks.N. (transformers).
constexpr std::array<Pair, 20> kInBlock = {{
    {"ln0.weight", "pre_ln.weight"},
    {"ln0.bias", "pre_ln.bias"},
    {"ln1.weight", "ln1.weight"},
    {"ln1.bias", "ln1.bias"},
    {"ln2.weight", "ln2.weight"},
    {"ln2.bias", "ln2.bias"},
    {"att.time_decay", "attention.time_decay"},
    {"att.time_first", "attention.time_first"},
    {"att.time_mix_k", "attention.time_mix_key"},
    {"att.time_mix_v", "attention.time_mix_value"},
    {"att.time_mix_r", "attention.time_mix_receptance"},
    {"att.key.weight", "attention.key.weight"},
    {"att.value.weight", "attention.value.weight"},
    {"att.receptance.weight", "attention.receptance.weight"},
    {"att.output.weight", "attention.output.weight"},
    {"ffn.time_mix_k", "feed_forward.time_mix_key"},
    {"ffn.time_mix_r", "feed_forward.time_mix_receptance"},
    {"ffn.key.weight", "feed_forward.key.weight"},
    {"ffn.receptance.weight", "feed_forward.receptance.weight"},
    {"ffn.value.weight", "feed_forward.value.weight"},
}};

// Splits "<prefix><digits>.<rest>"; false when `key` does not have that form.
bool split_block(const std::string& key, const std::string& prefix, std::string* index, std::string* rest) {
  if (key.compare(0, prefix.size(), prefix) != 0) return false;
  size_t i = prefix.size();
  while (i < key.size() && std::isdigit(static_cast<unsigned char>(key[i]))) ++i;
  if (i == prefix.size() || i >= key.size() || key[i] != '.') return false;
  *index = key.substr(prefix.size(), i - prefix.size());
  *rest = key.substr(i + 1);
  return true;
}

std::string translate(const std::string& key, bool to_hf) {
  const auto from = [&](const Pair& p) { return std::string(to_hf ? p.first : p.second); };
  const auto to = [&](const Pair& p) { return std::string(to_hf ? p.second : p.first); };
  for (const Pair& p : kTopLevel)
    if (key == from(p)) return to(p);
  const std::string block_from = to_hf ? "blocks." : "rwkv.blocks.";
  const std::string block_to = to_hf ? "rwkv.blocks." : "blocks.";
  std::string index, rest;
  if (split_block(key, block_from, &index, &rest))
    for (const Pair& p : kInBlock)
      if (rest == from(p)) return block_to + index + "." + to(p);
  throw std::invalid_argument(fmt::format("'{}' is not an RWKV-4 {} weight name", key,
                                          to_hf ? "reference" : "transformers"));
}

}  // namespace

std::string reference_to_hf_name(const std::string& reference_key) { return translate(reference_key, true); }
std::string hf_to_reference_name(const std::string& hf_key) { return translate(hf_key, false); }

}  // namespace rwkv
