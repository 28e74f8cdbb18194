#include "data/token_dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "data/binidx.h"
#include "data/hdf5_tokens.h"

namespace rwkv::data {

void check_token_ids(const TokenDataset& d, int64_t vocab_size, const std::string& field, int64_t budget) {
  constexpr int64_t kWindow = 4096;
  const int64_t n = d.size();
  const int64_t windows = n <= budget ? 1 : std::max<int64_t>(1, budget / kWindow);
  const int64_t length = n <= budget ? n : std::min(kWindow, n);
  std::vector<int64_t> ids(static_cast<size_t>(std::min<int64_t>(length, kWindow)));
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t start = windows == 1 ? 0 : (n - length) / (windows - 1) * w;
    for (int64_t pos = start; pos < start + length; pos += kWindow) {
      const int64_t count = std::min(kWindow, start + length - pos);
      d.read(pos, count, ids.data());
      for (int64_t i = 0; i < count; ++i) {
        const int64_t id = ids[static_cast<size_t>(i)];
        if (id < 0 || id >= vocab_size)
          throw std::runtime_error(fmt::format(
              "{}: token id {} at position {} is {}; {} is {}, so ids must lie in [0, {}) (was the data prepared "
              "with another tokenizer?)",
              d.describe(), id, pos + i, id < 0 ? "negative" : "out of range", field, vocab_size, vocab_size));
      }
    }
  }
}

std::unique_ptr<TokenDataset> open_token_dataset(const std::filesystem::path& path) {
  const auto ext = path.extension();
  if (ext == ".h5" || ext == ".hdf5") return std::make_unique<Hdf5TokenDataset>(path);
  return std::make_unique<BinIdxDataset>(path);
}

std::unique_ptr<TokenWriter> make_token_writer(const std::filesystem::path& path, TokenFormat format,
                                               int64_t vocab_size) {
  if (format == TokenFormat::hdf5) return std::make_unique<Hdf5TokenWriter>(path, vocab_size);
  return std::make_unique<BinIdxWriter>(path, binidx_dtype_for_vocab(vocab_size));
}

}  // namespace rwkv::data
