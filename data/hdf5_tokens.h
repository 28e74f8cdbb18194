#pragma once
// Token streams in HDF5 (the C API): dataset "tokens" (1-D, uint16 when the vocabulary fits,
// else int32; chunked, shuffle + deflate) and dataset "doc_offsets" (int64, n_docs+1 entries:
// document d is tokens[doc_offsets[d], doc_offsets[d+1]), the last entry equals the length).
// Debian's libhdf5 is not built thread-safe: every call into it holds one process-wide lock.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "data/token_writer.h"

namespace rwkv::data {

class Hdf5TokenWriter final : public TokenWriter {
 public:
  Hdf5TokenWriter(const std::filesystem::path& file, int64_t vocab_size);
  ~Hdf5TokenWriter() override;
  Hdf5TokenWriter(const Hdf5TokenWriter&) = delete;
  Hdf5TokenWriter& operator=(const Hdf5TokenWriter&) = delete;

  void add_document(std::span<const int32_t> tokens) override;
  void finish() override;
  int64_t num_tokens() const override { return num_tokens_; }
  int64_t num_documents() const override { return static_cast<int64_t>(doc_offsets_.size()) - 1; }

 private:
  void flush_pending();
  std::filesystem::path file_, tmp_;
  bool u16_ = true;
  int64_t file_id_ = -1, tokens_id_ = -1;  // hid_t, kept out of this header
  std::vector<int32_t> pending_;
  std::vector<int64_t> doc_offsets_{0};
  int64_t num_tokens_ = 0, written_ = 0;
  bool finished_ = false;
};

class Hdf5TokenDataset final : public TokenDataset {
 public:
  explicit Hdf5TokenDataset(const std::filesystem::path& file);
  ~Hdf5TokenDataset() override;
  Hdf5TokenDataset(const Hdf5TokenDataset&) = delete;
  Hdf5TokenDataset& operator=(const Hdf5TokenDataset&) = delete;

  int64_t size() const override { return num_tokens_; }
  int64_t num_documents() const override { return static_cast<int64_t>(doc_offsets_.size()) - 1; }
  int64_t document_offset(int64_t d) const override;
  void read(int64_t pos, int64_t n, int64_t* out) const override;
  std::string describe() const override;

 private:
  std::filesystem::path file_;
  int64_t file_id_ = -1, tokens_id_ = -1;
  int64_t num_tokens_ = 0;
  std::vector<int64_t> doc_offsets_;
};

}  // namespace rwkv::data
