// [io] TensorBoard event files (trainer/io/tensorboard_events.h): CRC-32C against published
// vectors, Event bytes against protobuf's own serializer, the TFRecord framing, file names that sort
// in creation order, and ([interop]) files that the `tensorboard` package reads whole, also after a
// full disk.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_tensorboard_read.h"
#include "tests/support/test_util.h"
#include "trainer/io/tensorboard_events.h"

namespace fs = std::filesystem;
using namespace rwkv::io;
using rwkv::test::tensorboard_read;

namespace {

std::string hex(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) out += fmt::format("{:02x}", static_cast<uint8_t>(c));
  return out;
}

uint64_t le(std::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = bytes.size(); i-- > 0;) v = v << 8 | static_cast<uint8_t>(bytes[i]);
  return v;
}



}  // namespace

TEST_CASE("CRC-32C matches the published check values; the mask is TFRecord's", "[io]") {
  CHECK(crc32c("123456789") == 0xE3069283u);  // the CRC catalogue's check value of CRC-32C
  // RFC 3720 (iSCSI) §B.4: 32 bytes of zeros, of ones, ascending and descending.
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(crc32c(std::string(32, '\xff')) == 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) up += static_cast<char>(i), down += static_cast<char>(31 - i);
  CHECK(crc32c(up) == 0x46DD794Eu);
  CHECK(crc32c(down) == 0x113FDB5Cu);
  CHECK(crc32c("") == 0u);
  // masked_crc32c(b"123456789") of the tensorboard package (compat/tensorflow_stub/pywrap_tensorflow.py).
  CHECK(masked_crc32c("123456789") == 0xC78AB0E5u);
}

TEST_CASE("Event messages are byte for byte what protobuf serializes", "[io]") {
  // The references: tensorboard.compat.proto.event_pb2.Event(...).SerializeToString() of the
  // tensorboard 2.21 package (protobuf 7.36), for the same fields.
  CHECK(hex(file_version_event(1.5)) == "09000000000000f83f1a0d627261696e2e4576656e743a32");
  CHECK(hex(session_start_event(1.5, 300)) == "09000000000000f83f10ac023a020801");
  const std::string scalars =
      scalars_event(1700000000.25, 123456789012, {{"loss", 2.5f}, {"lr", 0.001f}, {"tokens_per_s", 12345.678f}});
  CHECK(hex(scalars) ==
        "0900001040fc54d9411094b4e4f4cb032a2d0a0b0a046c6f737315000020400a090a026c72156f12833a0a130a0c746f6b656e735f"
        "7065725f7315b6e64046");

  // TFRecord: length, masked CRC of the length bytes, data, masked CRC of the data; the two CRCs
  // as the package's masked_crc32c gives them for this 63-byte event.
  const std::string record = tfrecord(scalars);
  REQUIRE(record.size() == 8 + 4 + scalars.size() + 4);
  CHECK(le(std::string_view(record).substr(0, 8)) == 63);
  CHECK(le(std::string_view(record).substr(8, 4)) == 0x61766551u);
  CHECK(std::string_view(record).substr(12, scalars.size()) == scalars);
  CHECK(le(std::string_view(record).substr(12 + scalars.size(), 4)) == 0x1A76EDE3u);
}

TEST_CASE("events files sort in the order they were made, also within one second", "[io]") {
  rwkv::test::TempDir dir("rwkv-tb-names");
  std::vector<fs::path> made;
  for (int i = 0; i < 3; ++i) made.push_back(TensorBoardEventFile(dir / "tb", {}).path());
  CHECK(std::is_sorted(made.begin(), made.end()));
  CHECK(made[0] != made[1]);
  for (const auto& p : made) {
    INFO(p);
    CHECK(p.filename().string().rfind("events.out.tfevents.", 0) == 0);
    CHECK(rwkv::test::slurp(p) == tfrecord(rwkv::test::slurp(p).substr(12, fs::file_size(p) - 16)));
  }
  std::ofstream(dir / "file") << "x";
  CHECK_THROWS_WITH(TensorBoardEventFile(dir / "file", {}),
                    Catch::Contains((dir / "file").string()) && Catch::Contains("cannot create the TensorBoard folder"));
}

TEST_CASE("tensorboard reads our events whole; after a full disk every event is there once, in order",
          "[io][interop]") {
  rwkv::test::TempDir dir("rwkv-tb-full");
  // A child whose file size limit plays the full disk (writes past it fail with EFBIG), then is
  // raised again (space returns); it reports through its exit status.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    int warnings = 0;
    {
      TensorBoardEventFile file(dir / "tb", [&](const std::string& w) {
        if (w.find("tfevents") != std::string::npos && w.find("File too large") != std::string::npos) ++warnings;
      });
      const auto write = [&](int64_t step) { file.write(scalars_event(1.0 + step, step, {{"loss", 1.0f / step}})); };
      rlimit lim{};
      ::getrlimit(RLIMIT_FSIZE, &lim);
      const rlim_t unlimited = lim.rlim_cur;
      for (int64_t s = 1; s <= 3; ++s) write(s);
      lim.rlim_cur = fs::file_size(file.path()) + 20;  // less than one more record
      ::setrlimit(RLIMIT_FSIZE, &lim);
      for (int64_t s = 4; s <= 6; ++s) write(s);
      if (file.waiting() != 3) ::_exit(10);
      lim.rlim_cur = unlimited;
      ::setrlimit(RLIMIT_FSIZE, &lim);
      write(7);
      if (file.waiting() != 0) ::_exit(11);
    }
    ::_exit(warnings == 3 ? 0 : 12);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  const nlohmann::json seen = tensorboard_read(dir / "tb");
  REQUIRE(seen["records"].size() == 1);
  CHECK(seen["records"][0]["records"] == 8);  // file version + 7 events, every CRC good
  std::vector<std::pair<int64_t, double>> want;
  for (int64_t s = 1; s <= 7; ++s) want.emplace_back(s, static_cast<double>(1.0f / static_cast<float>(s)));
  CHECK(seen["scalars"]["loss"].get<std::vector<std::pair<int64_t, double>>>() == want);
}
