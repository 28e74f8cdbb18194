#pragma once
// Byte-level BPE from a Hugging Face tokenizer.json, reproducing `tokenizers`' encode:
//  1. invalid UTF-8 → U+FFFD per maximal subpart (see utf8.h);
//  2. added tokens with normalized=false (e.g. <|endoftext|>) are cut out of the raw text,
//     leftmost-longest;
//  3. the rest is NFC-normalized (the normalizer must be NFC or absent);
//  4. added tokens with normalized=true (the 20B file's runs of 2–24 spaces) are cut out of the
//     normalized text, leftmost-longest;
//  5. the ByteLevel pre-tokenizer splits with the GPT-2 pattern (gpt2_split.h) and maps bytes to
//     GPT-2's printable alphabet;
//  6. each piece is merged by rank (lowest rank first, leftmost on ties).
// decode concatenates: model tokens map back through the byte alphabet, added tokens give their
// content. Unsupported options in the file (other normalizers/pre-tokenizers, add_prefix_space,
// dropout, subword prefixes, lstrip/rstrip/single_word) are rejected with an error naming them.
#include <array>
#include <filesystem>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tokenizer.h"

namespace rwkv::data {

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(const std::filesystem::path& tokenizer_json);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  int32_t eod_id() const override { return eod_; }
  std::string name() const override { return "bpe:" + path_.string(); }

  // The model's id of a token string (its byte-level spelling), or -1.
  int32_t token_id(const std::string& token) const;

 private:
  struct Trie {  // added-token matcher: byte trie, leftmost-longest
    struct Node {
      std::unordered_map<unsigned char, int> next;
      int32_t id = -1;
    };
    std::vector<Node> nodes{1};
    void add(std::string_view s, int32_t id);
    // Length of the longest token starting at s[i] (0 if none); *id receives its id.
    size_t match(std::string_view s, size_t i, int32_t* id) const;
    bool empty() const { return nodes.size() == 1; }
    // Splits `text` at every added token (leftmost-longest): each stretch between them goes to
    // `encode_text`, each added token's id to `out`, in text order.
    void split(std::string_view text, const std::function<void(std::string_view)>& encode_text,
               std::vector<int32_t>& out) const;
  };

  void encode_normalized(std::string_view text, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;

  std::filesystem::path path_;
  std::vector<std::string> id_to_token_;  // byte-level spelling, or an added token's content
  std::vector<bool> is_added_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left, right) → (rank, merged id)
  std::array<int32_t, 256> byte_id_{};  // id of each byte's one-character token (−1: absent)
  std::array<int32_t, 0x180> char_byte_{};  // byte of each alphabet code point, −1 elsewhere
  Trie raw_added_, normalized_added_;
  bool nfc_ = false, ignore_merges_ = false;
  int32_t eod_ = 0;
  uint64_t instance_;  // keys the per-thread piece cache
};

}  // namespace rwkv::data
