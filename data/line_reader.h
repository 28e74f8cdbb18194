#pragma once
// Reads a text file line by line, decompressing .zst files on the fly (zstd streaming API), so
// that memory stays bounded by the longest line whatever the file's size.
#include <zstd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace rwkv::data {

class LineReader {
 public:
  explicit LineReader(const std::filesystem::path& file);  // throws if it cannot be opened
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Next line without its '\n' (and without a trailing '\r'); false at the end of the file.
  // Throws std::runtime_error naming the file on read or decompression errors.
  bool next(std::string& line);
  // 1-based number of the line last returned.
  int64_t line_number() const { return line_number_; }
  // Bytes of the (possibly compressed) file consumed so far, for progress reports.
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  bool fill();  // appends decoded bytes to buf_; false at the end of input
  std::filesystem::path file_;
  std::FILE* f_ = nullptr;
  ZSTD_DStream* zstd_ = nullptr;
  std::vector<char> in_;
  size_t in_pos_ = 0, in_len_ = 0;
  std::string buf_;
  size_t buf_pos_ = 0;
  bool eof_ = false, zstd_frame_open_ = false;
  int64_t line_number_ = 0;
  uint64_t bytes_read_ = 0;
};

}  // namespace rwkv::data
