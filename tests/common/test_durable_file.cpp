// common/durable_file.h: a target appears complete or not at all, and a failed write leaves the
// old target and no temporary.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "common/durable_file.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace {

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("write_durably replaces a file or a folder whole and keeps the old one when the write fails",
          "[common]") {
  rwkv::test::TempDir dir("rwkv-durable");
  rwkv::write_file_durably(dir / "a.txt", "first");
  rwkv::write_file_durably(dir / "a.txt", "second");
  CHECK(rwkv::test::slurp(dir / "a.txt") == "second");

  CHECK_THROWS_WITH(rwkv::write_durably(dir / "a.txt",
                                        [](const fs::path& temp) {
                                          std::ofstream(temp) << "torn";
                                          throw std::runtime_error("disk full");
                                        }),
                    "disk full");
  CHECK(rwkv::test::slurp(dir / "a.txt") == "second");

  // A folder target: the new folder replaces the old one, with none of the old files left.
  const auto folder = [](const std::string& file) {
    return [file](const fs::path& temp) {
      fs::create_directories(temp);
      std::ofstream(temp / file) << file;
    };
  };
  rwkv::write_durably(dir / "f", folder("old.bin"));
  rwkv::write_durably(dir / "f", folder("new.bin"));
  CHECK(entries(dir / "f") == std::vector<std::string>{"new.bin"});
  CHECK(entries(dir.path()) == (std::vector<std::string>{"a.txt", "f"}));  // no temporaries

  CHECK_THROWS_WITH(rwkv::write_file_durably(dir / "missing" / "x", "x"), Catch::Contains("does not exist"));
}
