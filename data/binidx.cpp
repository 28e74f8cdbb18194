#include "data/binidx.h"

#include "common/durable_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <stdexcept>

namespace rwkv::data {
namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr size_t kHeaderSize = 9 + 8 + 1 + 8 + 8;

std::runtime_error error(const std::filesystem::path& file, const std::string& what) {
  return std::runtime_error(fmt::format("{}: {}", file.string(), what));
}

template <typename T>
T load_le(const unsigned char* p) {  // the format is little-endian, as is every host we build for
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Reads a whole small file (the index) into memory.
std::vector<unsigned char> read_file(const std::filesystem::path& file) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) throw error(file, fmt::format("cannot open: {}", std::strerror(errno)));
  std::vector<unsigned char> data;
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) throw error(file, "read error");
  return data;
}

void write_all(std::FILE* f, const void* data, size_t n, const std::filesystem::path& file) {
  if (n && std::fwrite(data, 1, n, f) != n)
    throw error(file, fmt::format("write failed: {}", std::strerror(errno)));
}

std::filesystem::path with_suffix(const std::filesystem::path& prefix, const char* suffix) {
  return std::filesystem::path(prefix.string() + suffix);
}

}  // namespace

size_t binidx_dtype_size(uint8_t code) {
  switch (code) {
    case 1: case 2: return 1;
    case 3: case 8: return 2;
    case 4: case 6: return 4;
    case 5: case 7: return 8;
    default: return 0;
  }
}

BinIdxDType binidx_dtype_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? BinIdxDType::u16 : BinIdxDType::i32;
}

std::filesystem::path binidx_prefix(const std::filesystem::path& path) {
  const auto ext = path.extension();
  if (ext == ".bin" || ext == ".idx") return std::filesystem::path(path).replace_extension();
  return path;
}

// ---------------------------------------------------------------------------------- writer --

BinIdxWriter::BinIdxWriter(const std::filesystem::path& prefix, BinIdxDType dtype)
    : prefix_(binidx_prefix(prefix)),
      bin_tmp_(with_suffix(prefix_, ".bin.tmp")),
      idx_tmp_(with_suffix(prefix_, ".idx.tmp")),
      dtype_(dtype) {
  if (dtype != BinIdxDType::u16 && dtype != BinIdxDType::i32)
    throw std::invalid_argument("BinIdxWriter writes uint16 or int32 token ids only");
  bin_ = std::fopen(bin_tmp_.c_str(), "wb");
  if (!bin_) throw error(bin_tmp_, fmt::format("cannot create: {}", std::strerror(errno)));
}

BinIdxWriter::~BinIdxWriter() {
  if (bin_) std::fclose(bin_);
  if (!finished_) {
    std::error_code ec;
    std::filesystem::remove(bin_tmp_, ec);
    std::filesystem::remove(idx_tmp_, ec);
  }
}

void BinIdxWriter::add_document(std::span<const int32_t> tokens) {
  if (finished_) throw std::logic_error("BinIdxWriter::add_document after finish()");
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw error(bin_tmp_, "document longer than 2^31-1 tokens (the index stores sizes as int32)");
  const size_t es = binidx_dtype_size(static_cast<uint8_t>(dtype_));
  buffer_.resize(tokens.size() * es);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (dtype_ == BinIdxDType::u16) {
      if (t < 0 || t > 65535)
        throw error(bin_tmp_, fmt::format("token id {} does not fit the uint16 .bin", t));
      const uint16_t v = static_cast<uint16_t>(t);
      std::memcpy(&buffer_[i * 2], &v, 2);
    } else {
      if (t < 0) throw error(bin_tmp_, fmt::format("negative token id {}", t));
      std::memcpy(&buffer_[i * 4], &t, 4);
    }
  }
  write_all(bin_, buffer_.data(), buffer_.size(), bin_tmp_);
  sizes_.push_back(static_cast<int32_t>(tokens.size()));
  num_tokens_ += static_cast<int64_t>(tokens.size());
}

void BinIdxWriter::finish() {
  if (finished_) return;
  if (std::fflush(bin_) != 0 || std::fclose(bin_) != 0) {
    bin_ = nullptr;
    throw error(bin_tmp_, fmt::format("write failed: {}", std::strerror(errno)));
  }
  bin_ = nullptr;

  std::FILE* idx = std::fopen(idx_tmp_.c_str(), "wb");
  if (!idx) throw error(idx_tmp_, fmt::format("cannot create: {}", std::strerror(errno)));
  try {
    const uint64_t version = 1, n = sizes_.size(), n_doc_idx = sizes_.size() + 1;
    const uint8_t code = static_cast<uint8_t>(dtype_);
    write_all(idx, kMagic, sizeof kMagic, idx_tmp_);
    write_all(idx, &version, 8, idx_tmp_);
    write_all(idx, &code, 1, idx_tmp_);
    write_all(idx, &n, 8, idx_tmp_);
    write_all(idx, &n_doc_idx, 8, idx_tmp_);
    write_all(idx, sizes_.data(), sizes_.size() * 4, idx_tmp_);
    std::vector<int64_t> v(sizes_.size());
    int64_t ptr = 0;
    const int64_t es = static_cast<int64_t>(binidx_dtype_size(code));
    for (size_t i = 0; i < sizes_.size(); ++i) {
      v[i] = ptr;
      ptr += sizes_[i] * es;
    }
    write_all(idx, v.data(), v.size() * 8, idx_tmp_);
    v.resize(n_doc_idx);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i);
    write_all(idx, v.data(), v.size() * 8, idx_tmp_);
    if (std::fflush(idx) != 0)
      throw error(idx_tmp_, fmt::format("write failed: {}", std::strerror(errno)));
  } catch (...) {
    std::fclose(idx);
    throw;
  }
  if (std::fclose(idx) != 0) throw error(idx_tmp_, "write failed on close");
  // .bin first: a reader needs the .idx, so a crash between the renames leaves no valid pair
  // that is stale against the other.
  commit_durably(bin_tmp_, with_suffix(prefix_, ".bin"));
  commit_durably(idx_tmp_, with_suffix(prefix_, ".idx"));
  finished_ = true;
}

// ---------------------------------------------------------------------------------- reader --

BinIdxDataset::BinIdxDataset(const std::filesystem::path& path) : prefix_(binidx_prefix(path)) {
  const auto idx_path = with_suffix(prefix_, ".idx"), bin_path = with_suffix(prefix_, ".bin");
  const std::vector<unsigned char> idx = read_file(idx_path);
  if (idx.size() < kHeaderSize)
    throw error(idx_path, fmt::format("truncated index: {} bytes, the header alone is {}",
                                      idx.size(), kHeaderSize));
  if (std::memcmp(idx.data(), kMagic, sizeof kMagic) != 0)
    throw error(idx_path, "not a Megatron MMIDIDX index (bad magic)");
  const auto version = load_le<uint64_t>(&idx[9]);
  if (version != 1) throw error(idx_path, fmt::format("unsupported index version {} (expected 1)", version));
  const uint8_t code = idx[17];
  elem_size_ = binidx_dtype_size(code);
  if (elem_size_ == 0) throw error(idx_path, fmt::format("unknown dtype code {}", code));
  if (code == 6 || code == 7)
    throw error(idx_path, fmt::format("dtype code {} is floating point; token ids must be integers", code));
  dtype_ = static_cast<BinIdxDType>(code);
  const auto n_seq = load_le<uint64_t>(&idx[18]);
  const auto n_doc_idx = load_le<uint64_t>(&idx[26]);
  // Both counts come from the file: bound them by the file's length before any arithmetic.
  const uint64_t body = idx.size() - kHeaderSize;
  if (n_seq > body / 12 || n_doc_idx > body / 8 || n_seq * 12 + n_doc_idx * 8 != body)
    throw error(idx_path, fmt::format("index length {} does not match {} sequences and {} doc_idx "
                                      "entries (expected {} bytes): truncated or corrupt",
                                      idx.size(), n_seq, n_doc_idx,
                                      n_seq <= body && n_doc_idx <= body
                                          ? std::to_string(kHeaderSize + n_seq * 12 + n_doc_idx * 8)
                                          : std::string("an impossible number of")));
  const unsigned char* sizes = &idx[kHeaderSize];
  const unsigned char* pointers = sizes + n_seq * 4;
  const unsigned char* doc_idx = pointers + n_seq * 8;

  std::vector<int64_t> seq_offsets(n_seq + 1, 0);  // in tokens
  for (uint64_t i = 0; i < n_seq; ++i) {
    const auto s = load_le<int32_t>(sizes + 4 * i);
    const auto p = load_le<int64_t>(pointers + 8 * i);
    if (s < 0) throw error(idx_path, fmt::format("sequence {} has negative size {}", i, s));
    if (p != seq_offsets[i] * static_cast<int64_t>(elem_size_))
      throw error(idx_path, fmt::format("sequence {} starts at byte {}, expected {}: the .bin is not "
                                        "one contiguous token stream, or the index is corrupt",
                                        i, p, seq_offsets[i] * static_cast<int64_t>(elem_size_)));
    seq_offsets[i + 1] = seq_offsets[i] + s;
  }
  num_tokens_ = seq_offsets[n_seq];

  // Documents: doc_idx lists the first sequence of each document, plus the end (n_seq).
  if (n_doc_idx == 0) throw error(idx_path, "empty doc_idx (expected at least the entry 0)");
  doc_offsets_.reserve(n_doc_idx);
  int64_t prev = 0;
  for (uint64_t d = 0; d < n_doc_idx; ++d) {
    const auto s = load_le<int64_t>(doc_idx + 8 * d);
    if (s < prev || s > static_cast<int64_t>(n_seq) || (d == 0 && s != 0))
      throw error(idx_path, fmt::format("doc_idx[{}] = {} is out of order or out of range [0, {}]", d,
                                        s, n_seq));
    doc_offsets_.push_back(seq_offsets[s]);
    prev = s;
  }
  if (prev != static_cast<int64_t>(n_seq)) doc_offsets_.push_back(num_tokens_);

  const int fd = ::open(bin_path.c_str(), O_RDONLY);
  if (fd < 0) throw error(bin_path, fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw error(bin_path, "cannot stat");
  }
  const uint64_t expected = static_cast<uint64_t>(num_tokens_) * elem_size_;
  if (static_cast<uint64_t>(st.st_size) != expected) {
    ::close(fd);
    throw error(bin_path, fmt::format("{} bytes, but the index describes {} tokens of {} bytes = {} "
                                      "bytes: truncated, or not the .bin of this .idx",
                                      st.st_size, num_tokens_, elem_size_, expected));
  }
  bin_len_ = static_cast<size_t>(st.st_size);
  if (bin_len_ > 0) {
    void* m = ::mmap(nullptr, bin_len_, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      ::close(fd);
      throw error(bin_path, fmt::format("mmap failed: {}", std::strerror(errno)));
    }
    bin_ = static_cast<const unsigned char*>(m);
  }
  ::close(fd);  // the mapping keeps the file
}

BinIdxDataset::~BinIdxDataset() {
  if (bin_) ::munmap(const_cast<unsigned char*>(bin_), bin_len_);
}

int64_t BinIdxDataset::document_offset(int64_t d) const {
  if (d < 0 || d > num_documents())
    throw std::out_of_range(fmt::format("document {} out of range [0, {}]", d, num_documents()));
  return doc_offsets_[static_cast<size_t>(d)];
}

void BinIdxDataset::read(int64_t pos, int64_t n, int64_t* out) const {
  if (pos < 0 || n < 0 || pos > num_tokens_ || n > num_tokens_ - pos)
    throw std::out_of_range(fmt::format("{}: window [{}, {}) outside the {} tokens",
                                        prefix_.string(), pos, pos + n, num_tokens_));
  const unsigned char* p = bin_ + static_cast<size_t>(pos) * elem_size_;
  switch (dtype_) {
    case BinIdxDType::u8: for (int64_t i = 0; i < n; ++i) out[i] = p[i]; break;
    case BinIdxDType::i8: for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(p[i]); break;
    case BinIdxDType::u16: for (int64_t i = 0; i < n; ++i) out[i] = load_le<uint16_t>(p + 2 * i); break;
    case BinIdxDType::i16: for (int64_t i = 0; i < n; ++i) out[i] = load_le<int16_t>(p + 2 * i); break;
    case BinIdxDType::i32: for (int64_t i = 0; i < n; ++i) out[i] = load_le<int32_t>(p + 4 * i); break;
    case BinIdxDType::i64: for (int64_t i = 0; i < n; ++i) out[i] = load_le<int64_t>(p + 8 * i); break;
    default: throw std::logic_error("unreachable dtype");
  }
}

std::string BinIdxDataset::describe() const {
  static const char* names[] = {"?", "uint8", "int8", "int16", "int32", "int64", "float32", "float64", "uint16"};
  return fmt::format("binidx {} ({}, {} tokens, {} documents)", prefix_.string(),
                     names[static_cast<int>(dtype_)], num_tokens_, num_documents());
}

}  // namespace rwkv::data
