#pragma once
// A flat stream of token ids on disk, read by windows. The trainer reads ctx_len+1 tokens at a
// position chosen by a sampler (data/README.md "Token files and sample order": windows may cross document boundaries).
// Implementations: binidx (Megatron MMIDIDX, mmapped) and HDF5; open_token_dataset picks one
// from the path.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace rwkv::data {

class TokenDataset {
 public:
  virtual ~TokenDataset() = default;
  // Number of tokens in the whole stream (all documents, EOD tokens included).
  virtual int64_t size() const = 0;
  // Number of documents.
  virtual int64_t num_documents() const = 0;
  // Token offset of document d's first token; document_offset(num_documents()) == size().
  virtual int64_t document_offset(int64_t d) const = 0;
  // Copies tokens [pos, pos+n) into out; throws std::out_of_range past the end.
  virtual void read(int64_t pos, int64_t n, int64_t* out) const = 0;
  // Human-readable description of what was opened (path, dtype), for logs.
  virtual std::string describe() const = 0;
  // Throws std::runtime_error naming the file when it was truncated, rewritten or replaced since
  // it was opened (a memory-mapped read past a shrunk end is a SIGBUS, not an error). Cheap: one
  // stat(2); the trainer calls it before every batch.
  virtual void check_unchanged() const {}
};

// Whether the ids of `d` are valid for a model of `vocab_size`, before any step needs one: all of
// them are read when the stream holds at most `budget` tokens, else `budget` tokens in evenly
// spaced windows over the whole stream. Throws std::runtime_error naming the dataset, the id and
// its position on the first id that is negative or >= vocab_size (`field` names the setting,
// e.g. "model.vocab_size").
void check_token_ids(const TokenDataset& d, int64_t vocab_size, const std::string& field,
                     int64_t budget = int64_t{1} << 24);

// `path` may be a binidx prefix (with or without .bin/.idx) or an .h5/.hdf5 file.
// Throws std::runtime_error naming the file and the problem when it is missing or malformed.
std::unique_ptr<TokenDataset> open_token_dataset(const std::filesystem::path& path);

}  // namespace rwkv::data
