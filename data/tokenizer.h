#pragma once
// Text ↔ token ids. Two implementations: the byte-level default (256 ids, one per byte, needs
// no file) and the byte-level BPE of a Hugging Face tokenizer.json (the GPT-NeoX-20B file the
// Pile was tokenized with, data/README.md "Token files and sample order"). Both are safe to call from many threads at once.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rwkv::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  // One past the largest id.
  virtual int64_t vocab_size() const = 0;
  // The end-of-document id written after each document (0: `<|endoftext|>` in the 20B vocab).
  virtual int32_t eod_id() const = 0;
  virtual std::string name() const = 0;
};

// Bytes as ids 0–255; decode(encode(x)) == x for any bytes. Id 0 doubles as the EOD marker
// (a NUL byte in text is indistinguishable from a document end; text corpora have none).
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// "byte" (or empty) → the byte-level tokenizer; anything else is a tokenizer.json path.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

}  // namespace rwkv::data
