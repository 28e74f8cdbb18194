#include "data/line_reader.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace rwkv::data {

LineReader::LineReader(const std::filesystem::path& file) : file_(file), in_(1 << 17) {
  f_ = std::fopen(file.c_str(), "rb");
  if (!f_) throw std::runtime_error(fmt::format("{}: cannot open: {}", file.string(), std::strerror(errno)));
  if (file.extension() == ".zst") {
    zstd_ = ZSTD_createDStream();
    ZSTD_initDStream(zstd_);
  }
}

LineReader::~LineReader() {
  if (zstd_) ZSTD_freeDStream(zstd_);
  if (f_) std::fclose(f_);
}

bool LineReader::fill() {
  if (eof_) return false;
  // Compact what the caller has consumed.
  buf_.erase(0, buf_pos_);
  buf_pos_ = 0;
  for (;;) {
    if (in_pos_ == in_len_) {
      in_len_ = std::fread(in_.data(), 1, in_.size(), f_);
      in_pos_ = 0;
      bytes_read_ += in_len_;
      if (in_len_ == 0) {
        if (std::ferror(f_)) throw std::runtime_error(fmt::format("{}: read error", file_.string()));
        eof_ = true;
        if (zstd_frame_open_)
          throw std::runtime_error(fmt::format("{}: truncated zstd stream (the last frame is incomplete)", file_.string()));
        return false;
      }
    }
    if (!zstd_) {
      buf_.append(in_.data() + in_pos_, in_len_ - in_pos_);
      in_pos_ = in_len_;
      return true;
    }
    char out[1 << 17];
    ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
    ZSTD_outBuffer o{out, sizeof out, 0};
    const size_t r = ZSTD_decompressStream(zstd_, &o, &in);
    if (ZSTD_isError(r))
      throw std::runtime_error(fmt::format("{}: zstd decompression failed: {}", file_.string(), ZSTD_getErrorName(r)));
    in_pos_ = in.pos;
    zstd_frame_open_ = r != 0;  // 0: a frame just ended
    buf_.append(out, o.pos);
    if (o.pos > 0) return true;
  }
}

bool LineReader::next(std::string& line) {
  size_t scanned = 0;  // bytes after buf_pos_ already known to hold no '\n'
  for (;;) {
    const size_t nl = buf_.find('\n', buf_pos_ + scanned);
    if (nl != std::string::npos) {
      line.assign(buf_, buf_pos_, nl - buf_pos_);
      buf_pos_ = nl + 1;
      break;
    }
    scanned = buf_.size() - buf_pos_;
    if (!fill()) {
      if (buf_pos_ >= buf_.size()) return false;
      line.assign(buf_, buf_pos_, std::string::npos);  // last line without '\n'
      buf_pos_ = buf_.size();
      break;
    }
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  ++line_number_;
  return true;
}

}  // namespace rwkv::data
