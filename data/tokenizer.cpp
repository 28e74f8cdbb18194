#include "data/tokenizer.h"

#include <fmt/format.h>

#include <stdexcept>

#include "data/bpe_tokenizer.h"

namespace rwkv::data {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> out(text.size());
    for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
    return out;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string out(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] > 255)
        throw std::out_of_range(fmt::format("token id {} outside the byte vocabulary [0, 256)", ids[i]));
      out[i] = static_cast<char>(ids[i]);
    }
    return out;
  }
  int64_t vocab_size() const override { return 256; }
  int32_t eod_id() const override { return 0; }
  std::string name() const override { return "byte"; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec.empty() || spec == "byte") return make_byte_tokenizer();
  return std::make_unique<BpeTokenizer>(spec);
}

}  // namespace rwkv::data
