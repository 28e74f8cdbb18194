#pragma once
// Megatron "MMIDIDX" token files (data/README.md "Token files and sample order"), as GPT-NeoX tokenized the Pile and as the
// reference RWKV trainer reads them. prefix.bin holds the raw token ids; prefix.idx is
//   "MMIDIDX\0\0" | u64 version=1 | u8 dtype code | u64 n_seq | u64 n_doc_idx |
//   i32 sizes[n_seq] | i64 byte pointers[n_seq] | i64 doc_idx[n_doc_idx]
// little-endian. We write one sequence per document, so doc_idx = 0, 1, …, n_seq (n_seq+1
// entries, the reference writer's convention).
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "data/token_writer.h"

namespace rwkv::data {

enum class BinIdxDType : uint8_t { u8 = 1, i8 = 2, i16 = 3, i32 = 4, i64 = 5, f32 = 6, f64 = 7, u16 = 8 };

// Bytes per element of a dtype code; 0 for an unknown code.
size_t binidx_dtype_size(uint8_t code);
// uint16 when every id fits (vocab ≤ 65536), else int32.
BinIdxDType binidx_dtype_for_vocab(int64_t vocab_size);

// prefix.bin / prefix.idx from a prefix that may carry either extension.
std::filesystem::path binidx_prefix(const std::filesystem::path& path);

// Streams documents into prefix.bin.tmp; finish() writes the index and renames both files
// into place, so an interrupted write never leaves a valid-looking pair behind.
class BinIdxWriter final : public TokenWriter {
 public:
  BinIdxWriter(const std::filesystem::path& prefix, BinIdxDType dtype);
  ~BinIdxWriter() override;  // removes the temporary files unless finish() ran
  BinIdxWriter(const BinIdxWriter&) = delete;
  BinIdxWriter& operator=(const BinIdxWriter&) = delete;

  // Appends one document (the caller includes its EOD token). Throws if an id does not fit.
  void add_document(std::span<const int32_t> tokens) override;
  void finish() override;
  int64_t num_tokens() const override { return num_tokens_; }
  int64_t num_documents() const override { return static_cast<int64_t>(sizes_.size()); }

 private:
  std::filesystem::path prefix_, bin_tmp_, idx_tmp_;
  BinIdxDType dtype_;
  std::FILE* bin_ = nullptr;
  std::vector<int32_t> sizes_;
  std::vector<char> buffer_;
  int64_t num_tokens_ = 0;
  bool finished_ = false;
};

// Read-only view of a binidx pair over mmap. Validation at open: magic, version, dtype code,
// index length against n_seq/n_doc_idx, pointers contiguous and consistent with sizes, and the
// .bin length equal to the sum of sizes.
class BinIdxDataset final : public TokenDataset {
 public:
  explicit BinIdxDataset(const std::filesystem::path& prefix);
  ~BinIdxDataset() override;
  BinIdxDataset(const BinIdxDataset&) = delete;
  BinIdxDataset& operator=(const BinIdxDataset&) = delete;

  int64_t size() const override { return num_tokens_; }
  int64_t num_documents() const override { return static_cast<int64_t>(doc_offsets_.size()) - 1; }
  int64_t document_offset(int64_t d) const override;
  void read(int64_t pos, int64_t n, int64_t* out) const override;
  std::string describe() const override;
  void check_unchanged() const override;
  BinIdxDType dtype() const { return dtype_; }

 private:
  std::filesystem::path prefix_;
  BinIdxDType dtype_{};
  size_t elem_size_ = 0;
  int64_t num_tokens_ = 0;
  std::vector<int64_t> doc_offsets_;  // token offsets of documents, plus the end
  const unsigned char* bin_ = nullptr;
  size_t bin_len_ = 0;
  // The .bin's identity at open: device, inode, size and modification time.
  uint64_t bin_dev_ = 0, bin_ino_ = 0;
  int64_t bin_mtime_ns_ = 0;
};

}  // namespace rwkv::data
