#include "data/text_tokens.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace rwkv::data {

TextTokens::TextTokens(const std::filesystem::path& path, const Tokenizer& tokenizer) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error(fmt::format("{}: read failed", path.string()));
  const auto ids = tokenizer.encode(text.str());
  tokens_.assign(ids.begin(), ids.end());
}

void TextTokens::read(int64_t pos, int64_t n, int64_t* out) const {
  if (pos < 0 || n < 0 || pos + n > size()) throw std::out_of_range(fmt::format("{}: read past the end", path_.string()));
  std::copy_n(tokens_.begin() + pos, n, out);
}

std::string TextTokens::describe() const { return fmt::format("{} (text, {} tokens)", path_.string(), size()); }

std::unique_ptr<TokenDataset> open_tokens_or_text(const std::filesystem::path& path, const Tokenizer& tokenizer) {
  if (path.extension() == ".txt") return std::make_unique<TextTokens>(path, tokenizer);
  return open_token_dataset(path);
}

}  // namespace rwkv::data
