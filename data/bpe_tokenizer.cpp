#include "data/bpe_tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <queue>
#include <stdexcept>

#include "data/gpt2_split.h"
#include "data/unicode_text.h"
#include "data/utf8.h"

namespace rwkv::data {
namespace {

using json = nlohmann::json;

// GPT-2's byte alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes for
// U+0100 upward in byte order (so that every token is printable text).
std::array<char32_t, 256> byte_alphabet() {
  std::array<char32_t, 256> a{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    a[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return a;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::runtime_error error(const std::filesystem::path& file, const std::string& what) {
  return std::runtime_error(fmt::format("{}: {}", file.string(), what));
}

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

void check_byte_level(const json& j, const char* where, const std::filesystem::path& file) {
  if (j.value("add_prefix_space", false))
    throw error(file, fmt::format("{}: ByteLevel with add_prefix_space=true is not supported", where));
  if (!j.value("use_regex", true))
    throw error(file, fmt::format("{}: ByteLevel with use_regex=false is not supported", where));
}

std::atomic<uint64_t> next_instance{1};

// Per-thread cache of encoded pieces: words repeat (Zipf), and BPE on a cached word is a lookup.
struct PieceCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>> map;
};
constexpr size_t kCacheMaxEntries = 1 << 18;

}  // namespace

void BpeTokenizer::Trie::add(std::string_view s, int32_t id) {
  int node = 0;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    auto it = nodes[node].next.find(c);
    if (it == nodes[node].next.end()) {
      nodes.emplace_back();
      it = nodes[node].next.emplace(c, static_cast<int>(nodes.size()) - 1).first;
    }
    node = it->second;
  }
  nodes[node].id = id;
}

size_t BpeTokenizer::Trie::match(std::string_view s, size_t i, int32_t* id) const {
  size_t best = 0;
  int node = 0;
  for (size_t k = i; k < s.size(); ++k) {
    const auto it = nodes[node].next.find(static_cast<unsigned char>(s[k]));
    if (it == nodes[node].next.end()) break;
    node = it->second;
    if (nodes[node].id >= 0) {
      best = k + 1 - i;
      *id = nodes[node].id;
    }
  }
  return best;
}

BpeTokenizer::BpeTokenizer(const std::filesystem::path& file) : path_(file), instance_(next_instance++) {
  std::ifstream in(file);
  if (!in) throw error(file, "cannot open tokenizer file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw error(file, fmt::format("not valid JSON: {}", e.what()));
  }
  try {
    const json& model = j.at("model");
    if (type_of(model) != "BPE") throw error(file, fmt::format("model.type is '{}', expected 'BPE'", type_of(model)));
    if (!model.value("dropout", json()).is_null()) throw error(file, "BPE dropout is not supported");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(k) && !model[k].is_null() && !model[k].get<std::string>().empty())
        throw error(file, fmt::format("model.{} is not supported", k));
    if (model.value("byte_fallback", false)) throw error(file, "model.byte_fallback is not supported");
    ignore_merges_ = model.value("ignore_merges", false);

    const json& norm = j.value("normalizer", json());
    if (type_of(norm) == "NFC") nfc_ = true;
    else if (!norm.is_null()) throw error(file, fmt::format("normalizer '{}' is not supported (NFC or none)", type_of(norm)));
    const json& pre = j.value("pre_tokenizer", json());
    if (type_of(pre) != "ByteLevel")
      throw error(file, fmt::format("pre_tokenizer '{}' is not supported (ByteLevel only)", type_of(pre)));
    check_byte_level(pre, "pre_tokenizer", file);

    int32_t max_id = -1;
    for (const auto& [tok, id] : model.at("vocab").items()) {
      const int32_t i = id.get<int32_t>();
      if (i < 0) throw error(file, fmt::format("negative id for token '{}'", tok));
      vocab_.emplace(tok, i);
      max_id = std::max(max_id, i);
    }
    const json& added = j.value("added_tokens", json::array());
    for (const json& a : added) max_id = std::max(max_id, a.at("id").get<int32_t>());
    id_to_token_.assign(static_cast<size_t>(max_id) + 1, std::string());
    is_added_.assign(id_to_token_.size(), false);
    for (const auto& [tok, id] : vocab_) id_to_token_[static_cast<size_t>(id)] = tok;

    const auto alphabet = byte_alphabet();
    char_byte_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, alphabet[b]);
      const auto it = vocab_.find(s);
      // Bytes that valid UTF-8 never contains (C0, C1, F5–FF) may be absent, as in the 20B file;
      // encode sees only valid UTF-8, so only the others are required.
      const bool in_utf8 = b < 0xC0 || (b >= 0xC2 && b <= 0xF4);
      if (it == vocab_.end() && in_utf8)
        throw error(file, fmt::format("the vocabulary lacks the byte-level token for byte {}", b));
      byte_id_[b] = it == vocab_.end() ? -1 : it->second;
      char_byte_[alphabet[b]] = b;
    }

    int32_t rank = 0;
    for (const json& m : model.at("merges")) {
      std::string a, b;
      if (m.is_string()) {  // "a b" (older files, like the 20B one)
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) throw error(file, fmt::format("merge {} '{}' has no space", rank, s));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {  // ["a", "b"]
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
      if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end())
        throw error(file, fmt::format("merge {} ('{}' + '{}') uses a token missing from the vocabulary", rank, a, b));
      merges_.try_emplace(pair_key(ia->second, ib->second), rank, im->second);
      ++rank;
    }

    bool have_eod = false;
    for (const json& a : added) {
      const auto content = a.at("content").get<std::string>();
      const int32_t id = a.at("id").get<int32_t>();
      for (const char* k : {"lstrip", "rstrip", "single_word"})
        if (a.value(k, false))
          throw error(file, fmt::format("added token '{}' uses {}=true, which is not supported", content, k));
      if (content.empty()) throw error(file, fmt::format("added token {} is empty", id));
      id_to_token_[static_cast<size_t>(id)] = content;
      is_added_[static_cast<size_t>(id)] = true;
      (a.value("normalized", true) ? normalized_added_ : raw_added_).add(content, id);
      if (content == "<|endoftext|>") {
        eod_ = id;
        have_eod = true;
      }
    }
    if (!have_eod) {
      const auto it = vocab_.find("<|endoftext|>");
      eod_ = it != vocab_.end() ? it->second : 0;
    }
  } catch (const json::exception& e) {
    throw error(file, fmt::format("unexpected tokenizer.json layout: {}", e.what()));
  }
}

int32_t BpeTokenizer::token_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view input) const {
  std::string sanitized;
  std::string_view text = input;
  if (!is_valid_utf8(input)) {
    sanitized = sanitize_utf8(input);
    text = sanitized;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  raw_added_.split(
      text, [&](std::string_view segment) { encode_normalized(nfc_ ? std::string_view(nfc(segment)) : segment, out); },
      out);
  return out;
}

void BpeTokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& out) const {
  normalized_added_.split(
      text,
      [&](std::string_view segment) {
        thread_local std::vector<std::string_view> pieces;
        pieces.clear();
        gpt2_split(segment, pieces);
        for (const auto p : pieces) encode_piece(p, out);
      },
      out);
}

void BpeTokenizer::Trie::split(std::string_view text, const std::function<void(std::string_view)>& encode_text,
                               std::vector<int32_t>& out) const {
  size_t start = 0;
  for (size_t i = 0; i < text.size() && !empty();) {
    int32_t id = -1;
    const size_t len = match(text, i, &id);
    if (len == 0) {
      ++i;
      continue;
    }
    if (i > start) encode_text(text.substr(start, i - start));
    out.push_back(id);
    i += len;
    start = i;
  }
  if (text.size() > start) encode_text(text.substr(start));
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  thread_local PieceCache cache;
  if (cache.owner != instance_) {
    cache.map.clear();
    cache.owner = instance_;
  }
  const std::string key(piece);
  const auto it = cache.map.find(key);
  if (it != cache.map.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<int32_t> ids;
  bpe(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cache.map.size() >= kCacheMaxEntries) cache.map.clear();
  cache.map.emplace(key, std::move(ids));
}

void BpeTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  const size_t n = piece.size();
  if (ignore_merges_) {  // a word that is a vocabulary entry is taken whole
    static const auto alphabet = byte_alphabet();
    std::string spelled;
    for (const char ch : piece) append_utf8(spelled, alphabet[static_cast<unsigned char>(ch)]);
    const auto it = vocab_.find(spelled);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols in a doubly linked list; candidate merges in a min-heap on (rank, position).
  std::vector<int32_t> id(n);
  std::vector<int> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    id[i] = byte_id_[static_cast<unsigned char>(piece[i])];
    prev[i] = static_cast<int>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int>(i) + 1 : -1;
  }
  using Cand = std::pair<int32_t, int>;  // (rank, left position)
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  const auto push = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    const auto it = merges_.find(pair_key(id[left], id[next[left]]));
    if (it != merges_.end()) heap.emplace(it->second.first, left);
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
  std::vector<bool> dead(n, false);
  while (!heap.empty()) {
    const auto [rank, left] = heap.top();
    heap.pop();
    if (dead[left] || next[left] < 0) continue;
    const auto it = merges_.find(pair_key(id[left], id[next[left]]));
    if (it == merges_.end() || it->second.first != rank) continue;  // stale entry
    const int right = next[left];
    id[left] = it->second.second;
    dead[right] = true;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push(prev[left]);
    push(left);
  }
  for (int i = n ? 0 : -1; i >= 0; i = next[i]) out.push_back(id[i]);
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (const int32_t i : ids) {
    if (i < 0 || i >= vocab_size())
      throw std::out_of_range(fmt::format("token id {} outside the vocabulary [0, {})", i, vocab_size()));
    const std::string& tok = id_to_token_[static_cast<size_t>(i)];
    if (is_added_[static_cast<size_t>(i)]) {
      out += tok;
      continue;
    }
    for (size_t k = 0; k < tok.size();) {
      const int len = utf8_sequence_length(tok, k);
      const char32_t c = utf8_decode_at(tok, k, len > 0 ? len : 1);
      if (len > 0 && c < char_byte_.size() && char_byte_[c] >= 0) out += static_cast<char>(char_byte_[c]);
      else out.append(tok, k, static_cast<size_t>(len > 0 ? len : 1));
      k += static_cast<size_t>(len > 0 ? len : 1);
    }
  }
  return out;
}

}  // namespace rwkv::data
