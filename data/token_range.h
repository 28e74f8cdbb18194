#pragma once
// Tokens [begin, end) of another token stream as a stream of its own: the held-out tail of a
// training file (validation.split_tokens) and each rank's share of the validation windows
// (trainer/train/validation.h). Its documents are the underlying ones that overlap the range,
// clipped to it.
#include <cstdint>
#include <memory>
#include <string>

#include "data/token_dataset.h"

namespace rwkv::data {

class TokenRange final : public TokenDataset {
 public:
  // Throws std::out_of_range unless 0 <= begin <= end <= base->size().
  TokenRange(std::shared_ptr<const TokenDataset> base, int64_t begin, int64_t end);
  int64_t size() const override { return end_ - begin_; }
  int64_t num_documents() const override { return last_doc_ - first_doc_; }
  int64_t document_offset(int64_t d) const override;
  void read(int64_t pos, int64_t n, int64_t* out) const override;
  std::string describe() const override;
  void check_unchanged() const override { base_->check_unchanged(); }
  int64_t begin() const { return begin_; }

 private:
  std::shared_ptr<const TokenDataset> base_;
  int64_t begin_, end_;
  int64_t first_doc_ = 0, last_doc_ = 0;  // the base's documents [first_doc_, last_doc_) overlap the range
};

}  // namespace rwkv::data
