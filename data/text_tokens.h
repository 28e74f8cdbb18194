#pragma once
// A plain text file as a token stream: read whole and tokenized in memory, one document (what
// `rwkv eval --data x.txt` and a `validation.path` ending in .txt score).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "data/tokenizer.h"

namespace rwkv::data {

class TextTokens final : public TokenDataset {
 public:
  // Throws std::runtime_error naming the file when it cannot be read.
  TextTokens(const std::filesystem::path& path, const Tokenizer& tokenizer);
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  int64_t num_documents() const override { return 1; }
  int64_t document_offset(int64_t d) const override { return d == 0 ? 0 : size(); }
  void read(int64_t pos, int64_t n, int64_t* out) const override;
  std::string describe() const override;

 private:
  std::filesystem::path path_;
  std::vector<int64_t> tokens_;
};

// A .txt file through TextTokens with `tokenizer`; anything else through open_token_dataset
// (binidx prefix or .h5/.hdf5).
std::unique_ptr<TokenDataset> open_tokens_or_text(const std::filesystem::path& path, const Tokenizer& tokenizer);

}  // namespace rwkv::data
