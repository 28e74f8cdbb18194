#pragma once
// Writes a token stream document by document (the caller appends each document's EOD token).
// Output goes to temporary names; finish() makes it visible atomically. Destroying an
// unfinished writer removes the temporaries, so a failed `rwkv prep` leaves nothing behind.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace rwkv::data {

class TokenWriter {
 public:
  virtual ~TokenWriter() = default;
  virtual void add_document(std::span<const int32_t> tokens) = 0;
  virtual void finish() = 0;
  virtual int64_t num_tokens() const = 0;
  virtual int64_t num_documents() const = 0;
};

enum class TokenFormat { binidx, hdf5 };

// binidx: `path` is the prefix (uint16 ids when vocab_size ≤ 65536, else int32).
// hdf5: `path` is the .h5 file.
std::unique_ptr<TokenWriter> make_token_writer(const std::filesystem::path& path, TokenFormat format,
                                               int64_t vocab_size);

}  // namespace rwkv::data
