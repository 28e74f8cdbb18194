#pragma once
// TensorBoard event files, written without TensorFlow or libprotobuf: only the few protobuf fields
// that scalars need are encoded here, by hand.
//
// An events file is a sequence of TFRecords (tensorflow/core/lib/io/record_writer.cc):
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data
// each holding one serialized tensorboard.Event (tensorboard/compat/proto/event.proto, summary.proto):
//   Event      wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5,
//              session_log = 7
//   Summary    value = 1 (repeated Value)
//   Value      tag = 1 (string), simple_value = 2 (float)
//   SessionLog status = 1 (enum; START = 1)
// The first record of a file is the file_version "brain.Event:2". Readers (TensorBoard's Python
// event accumulator and its Rust data server) take every file whose name holds "tfevents" and read
// the files of a folder in the sorted order of their names.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace rwkv::io {

// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial and final value 0xFFFFFFFF;
// RFC 3720 §B.4), the checksum of the TFRecord framing. crc32c("123456789") = 0xE3069283.
uint32_t crc32c(std::string_view bytes);

// The masked CRC that TFRecords store, ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32):
// a CRC computed over bytes that themselves hold CRCs is weak, the rotation and offset fix that
// (tensorflow/core/lib/hash/crc32c.h, Mask).
uint32_t masked_crc32c(std::string_view bytes);

// One TFRecord holding `data`.
std::string tfrecord(std::string_view data);

struct TensorBoardScalar {
  std::string tag;
  float value;  // simple_value is a float: TensorBoard shows scalars at float precision
};

// Serialized Event messages: the file_version record that opens a file; a SessionLog START at
// `step` (TensorBoard's Python reader then drops the scalars of steps >= `step` read so far:
// those an interrupted run logged after the checkpoint it resumes from); scalars at `step`.
std::string file_version_event(double wall_time);
std::string session_start_event(double wall_time, int64_t step);
std::string scalars_event(double wall_time, int64_t step, const std::vector<TensorBoardScalar>& scalars);

// Seconds since the Unix epoch, the wall_time of an Event.
double event_wall_time();

// A new events file in `dir` (created if missing), opened with its file_version record. It is named
// events.out.tfevents.<10-digit seconds>.<host>.<pid> like TensorFlow's, the seconds moved past
// those of every such file already in `dir`, so that its name sorts after theirs even when a
// resumed run starts within the second (readers order the files by name). Throws naming the path
// when the file cannot be created.
//
// Each event is appended whole or not at all. A failed write (a full disk) is reported through
// `warn` (empty: the process log, common/log/log.h) with the path and the errno text, and undone back to the last whole record; the event waits
// and is written, in order, by the next write that succeeds, so a reader never meets a torn record
// followed by more data (which it would take as corruption) and no event is lost while the disk
// recovers (as metrics.jsonl, trainer/train/metrics.h).
class TensorBoardEventFile {
 public:
  TensorBoardEventFile(const std::filesystem::path& dir, std::function<void(const std::string&)> warn);
  ~TensorBoardEventFile();
  TensorBoardEventFile(const TensorBoardEventFile&) = delete;
  TensorBoardEventFile& operator=(const TensorBoardEventFile&) = delete;

  // Appends one serialized Event, framed as a TFRecord.
  void write(std::string_view event);
  const std::filesystem::path& path() const { return path_; }
  // Records that failed to be written so far and wait for the next write.
  size_t waiting() const { return waiting_.size(); }

 private:
  bool write_waiting();

  std::filesystem::path path_;
  std::function<void(const std::string&)> warn_;
  int fd_ = -1;
  std::vector<std::string> waiting_;
};

}  // namespace rwkv::io
