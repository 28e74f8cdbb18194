#pragma once
// The process's log: every message the `rwkv` binary writes for a person to read (training lines,
// progress lines into a log, warnings), at a level, with a timestamp and, in a run of several
// ranks, the rank. Results (`rwkv eval`'s figures, `rwkv info`, generated text, --json) are data and
// go to stdout without it; errors that end the process stay main.cpp's `rwkv: error: …` line on
// stderr and are copied into the log file.
//
// Console (stderr; on a terminal the level word in colour):
//   18:02:23 stage 0: ctx_len 128, global batch 8 (8 x 1), 150 steps
//   18:02:23 warning: checkpoint runs/demo/checkpoints/step-100: …
//   18:02:23 [rank 1] debug: step 7: …                        (several ranks)
// Log file (rotating: name.log → name.1.log → … name.{keep}.log, the oldest dropped):
//   2026-12-07 18:02:23.481 info    stage 0: ctx_len 128, …
//   2026-12-07 18:02:23.481 [rank 1] warning checkpoint …     (several ranks)
//
// Behind this header sits spdlog (Debian's, built on Debian's fmt 9), in a target of its own
// (common/log/CMakeLists.txt) that never sees LibTorch's include folder and its fmt 12 headers;
// the interface is plain strings, so callers format with whatever fmt they see. Thread-safe.
#include <cstddef>
#include <filesystem>
#include <string_view>

namespace rwkv::logging {

enum class Level { trace, debug, info, warn, error };

struct Setup {
  Level level = Level::info;  // messages below it are dropped
  int rank = 0;
  int world_size = 1;         // above 1: every line names the rank
  bool console = true;        // this process writes its messages to stderr
};

// Until configure() the process logs at info to the console, without a rank.
void configure(const Setup& setup);

// From now on messages also go into `path` (its folder is created), appended to what it holds and
// rotated when it would pass `max_bytes`, `keep` earlier files kept. The messages logged since
// the process started (the last 1024) are written into it first, so the file begins where the
// console did. Replaces an earlier file. Throws std::runtime_error naming the path when it
// cannot be opened.
void open_file(const std::filesystem::path& path, std::size_t max_bytes, std::size_t keep);

bool enabled(Level level);
void write(Level level, std::string_view message);
inline void trace(std::string_view m) { write(Level::trace, m); }
inline void debug(std::string_view m) { write(Level::debug, m); }
inline void info(std::string_view m) { write(Level::info, m); }
inline void warn(std::string_view m) { write(Level::warn, m); }

// An error the caller reports on stderr itself (main.cpp): into the log file only, at error level.
void error_to_file(std::string_view message);

}  // namespace rwkv::logging
