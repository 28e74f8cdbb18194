#include "trainer/io/tensorboard_events.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "common/durable_file.h"
#include "common/log/log.h"

namespace rwkv::io {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPrefix = "events.out.tfevents.";

// Byte-at-a-time table of the reflected Castagnoli polynomial.
const std::array<uint32_t, 256>& crc32c_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Protobuf wire format (protobuf.dev "Encoding"): a key is (field << 3 | wire type), then a varint
// (type 0), 8 little-endian bytes (type 1), a varint length and the bytes (type 2) or 4 bytes (type 5).
void put_varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<char>((v & 0x7f) | 0x80));
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) { put_varint(out, static_cast<uint64_t>(field) << 3 | wire_type); }
void put_double(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, 1);
  put_le(out, bits, 8);
}
void put_float(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, 5);
  put_le(out, bits, 4);
}
void put_int64(std::string& out, int field, int64_t v) {
  put_key(out, field, 0);
  put_varint(out, static_cast<uint64_t>(v));  // int64: two's complement, ten bytes when negative
}
void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// Event fields 1 and 2. A step of 0 is left out, as protobuf leaves out proto3 fields at their
// default, so the bytes are exactly those of protobuf's own serializer.
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) put_int64(e, 2, step);
  return e;
}

// The 10-digit seconds of a name made by this writer (or TensorFlow's), else -1.
int64_t name_seconds(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0 || name.size() < kPrefix.size() + 10) return -1;
  int64_t s = 0;
  for (size_t i = kPrefix.size(); i < kPrefix.size() + 10; ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    s = s * 10 + (name[i] - '0');
  }
  return s;
}

std::string host_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace

uint32_t crc32c(std::string_view bytes) {
  const auto& table = crc32c_table();
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : bytes) c = table[(c ^ static_cast<uint8_t>(ch)) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view data) {
  std::string length;
  put_le(length, data.size(), 8);
  std::string out = length;
  put_le(out, masked_crc32c(length), 4);
  out.append(data);
  put_le(out, masked_crc32c(data), 4);
  return out;
}

std::string file_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string session_start_event(double wall_time, int64_t step) {
  std::string log;
  put_key(log, 1, 0);
  put_varint(log, 1);  // SessionLog.START
  std::string e = event_head(wall_time, step);
  put_bytes(e, 7, log);
  return e;
}

std::string scalars_event(double wall_time, int64_t step, const std::vector<TensorBoardScalar>& scalars) {
  std::string summary;
  for (const auto& s : scalars) {
    std::string value;
    put_bytes(value, 1, s.tag);
    put_float(value, 2, s.value);
    put_bytes(summary, 1, value);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

double event_wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TensorBoardEventFile::TensorBoardEventFile(const fs::path& dir, std::function<void(const std::string&)> warn)
    : warn_(warn ? std::move(warn) : [](const std::string& w) { logging::warn(w); }) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw std::runtime_error(fmt::format("{}: cannot create the TensorBoard folder: {}", dir.string(),
                                         ec ? ec.message() : "a file of that name is in the way"));
  auto seconds = static_cast<int64_t>(event_wall_time());
  for (const auto& entry : fs::directory_iterator(dir))
    seconds = std::max(seconds, name_seconds(entry.path().filename().string()) + 1);
  path_ = dir / fmt::format("{}{:010d}.{}.{}", kPrefix, seconds, host_name(), ::getpid());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0 || !append_whole(fd_, tfrecord(file_version_event(event_wall_time())))) {
    const std::string why = std::strerror(errno);
    if (fd_ >= 0) ::close(fd_);
    throw std::runtime_error(fmt::format("{}: cannot create the TensorBoard events file: {}", path_.string(), why));
  }
}

TensorBoardEventFile::~TensorBoardEventFile() {
  if (!waiting_.empty() && !write_waiting())
    warn_(fmt::format("{}: {} TensorBoard events could not be written and are lost", path_.string(), waiting_.size()));
  if (fd_ >= 0) ::close(fd_);
}

void TensorBoardEventFile::write(std::string_view event) {
  waiting_.push_back(tfrecord(event));
  write_waiting();
}

bool TensorBoardEventFile::write_waiting() {
  if (fd_ < 0) fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  size_t done = 0;
  while (fd_ >= 0 && done < waiting_.size() && append_whole(fd_, waiting_[done])) ++done;
  const bool all = done == waiting_.size();
  if (!all) {
    warn_(fmt::format("{}: cannot write a TensorBoard event: {}; {} event(s) wait and are written with the next one",
                      path_.string(), std::strerror(errno), waiting_.size() - done));
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;  // reopened next time
  }
  waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(done));
  return all;
}

}  // namespace rwkv::io
