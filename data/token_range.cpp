#include "data/token_range.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace rwkv::data {
namespace {

// The document holding token `pos` of `d` (0 <= pos < size): the last d with offset(d) <= pos.
// Document offsets never decrease, so a binary search over them.
int64_t document_at(const TokenDataset& d, int64_t pos) {
  int64_t lo = 0, hi = d.num_documents();  // offset(lo) <= pos < offset(hi)
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (d.document_offset(mid) <= pos ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace

TokenRange::TokenRange(std::shared_ptr<const TokenDataset> base, int64_t begin, int64_t end)
    : base_(std::move(base)), begin_(begin), end_(end) {
  if (begin < 0 || begin > end || end > base_->size())
    throw std::out_of_range(fmt::format("{}: token range [{}, {}) outside [0, {})", base_->describe(), begin, end,
                                        base_->size()));
  if (begin < end && base_->num_documents() > 0) {
    first_doc_ = document_at(*base_, begin);
    last_doc_ = document_at(*base_, end - 1) + 1;
  }
}

int64_t TokenRange::document_offset(int64_t d) const {
  if (d < 0 || d > num_documents())
    throw std::out_of_range(fmt::format("document {} out of range [0, {}]", d, num_documents()));
  if (d == num_documents()) return size();
  return std::max<int64_t>(0, base_->document_offset(first_doc_ + d) - begin_);
}

void TokenRange::read(int64_t pos, int64_t n, int64_t* out) const {
  if (pos < 0 || n < 0 || pos + n > size())
    throw std::out_of_range(fmt::format("{}: read of [{}, {}) past the end ({} tokens)", describe(), pos, pos + n, size()));
  base_->read(begin_ + pos, n, out);
}

std::string TokenRange::describe() const {
  return fmt::format("tokens [{}, {}) of {}", begin_, end_, base_->describe());
}

}  // namespace rwkv::data
