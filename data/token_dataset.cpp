#include "data/token_dataset.h"

#include <fmt/format.h>

#include <stdexcept>

#include "data/binidx.h"
#include "data/hdf5_tokens.h"

namespace rwkv::data {

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
