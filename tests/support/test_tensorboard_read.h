#pragma once
// What the `tensorboard` package reads from a folder of event files (tests/interop/tensorboard_read.py):
// {"records": [{"name", "records"}, ...] per file in reading order, "scalars": {tag: [[step, value], ...]}}.
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace rwkv::test {

// The script's report of `folder`, through a file beside it (stdout carries the reader's own notes).
inline nlohmann::json tensorboard_read(const std::filesystem::path& folder) {
  const std::filesystem::path json = folder.parent_path() / "tensorboard_read.json";
  const std::string script = (source_dir() / "tests/interop/tensorboard_read.py").string();
  std::string out;
  const int rc = run(fmt::format("{} {} {} {}", python(), script, folder.string(), json.string()), &out);
  INFO(out);
  REQUIRE(rc == 0);
  return nlohmann::json::parse(slurp(json));
}

}  // namespace rwkv::test
