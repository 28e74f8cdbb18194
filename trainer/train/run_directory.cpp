#include "trainer/train/run_directory.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/yaml_section.h"

namespace rwkv::trainer {
namespace fs = std::filesystem;
namespace {

constexpr const char* kLockFile = "rwkv.lock";

void require_folder_or_nothing(const RunConfig& c, const char* field, const fs::path& p) {
  if (fs::exists(p) && !fs::is_directory(p))
    throw ConfigError(fmt::format("{}: {}: '{}' exists and is not a directory", c.file, field, p.string()));
}

void require_file_or_nothing(const RunConfig& c, const fs::path& p) {
  if (fs::exists(p) && !fs::is_regular_file(p))
    throw ConfigError(fmt::format("{}: train.run_dir: '{}' exists and is not a regular file; the run writes it",
                                  c.file, p.string()));
}

bool holds(const fs::path& folder, const fs::path& inside) {
  const fs::path f = fs::weakly_canonical(fs::absolute(folder)), i = fs::weakly_canonical(fs::absolute(inside));
  return std::mismatch(f.begin(), f.end(), i.begin(), i.end()).first == f.end();
}

// The first `<folder>/<stem>N<suffix>` (N = 1, 2, ...) that does not exist.
fs::path first_free(const fs::path& folder, const std::string& stem, const std::string& suffix) {
  for (int n = 1;; ++n) {
    const fs::path p = folder / fmt::format("{}{}{}", stem, n, suffix);
    if (!fs::exists(p)) return p;
  }
}

// rename(2) or a message saying what stays where.
void move(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec)
    throw std::runtime_error(fmt::format("cannot move {} to {}: {} (nothing was deleted; move it yourself)",
                                         from.string(), to.string(), ec.message()));
}

std::string lock_holder(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  return n > 0 ? fmt::format(" (pid {})", std::string(buf, static_cast<size_t>(n))) : std::string();
}

}  // namespace

void check_run_paths(const RunConfig& c) {
  const fs::path run_dir = c.train.run_dir;
  require_folder_or_nothing(c, "train.run_dir", run_dir);
  require_folder_or_nothing(c, "checkpoint.dir", c.checkpoint.dir);
  require_folder_or_nothing(c, "train.run_dir", run_dir / "tb");
  require_file_or_nothing(c, run_dir / "metrics.jsonl");
  require_file_or_nothing(c, run_dir / "config.yaml");
  require_file_or_nothing(c, run_dir / "train.log");
  require_folder_or_nothing(c, "train.run_dir", run_dir / "logs");
  if (fs::is_directory(run_dir / kLockFile))
    throw ConfigError(fmt::format("{}: train.run_dir: '{}' is a directory; the run locks that file", c.file,
                                  (run_dir / kLockFile).string()));
}

fs::path run_log_path(const RunConfig& c, int rank) {
  const fs::path run_dir = c.train.run_dir;
  return rank == 0 ? run_dir / "train.log" : run_dir / "logs" / fmt::format("rank-{}.log", rank);
}

std::vector<fs::path> run_lock_dirs(const RunConfig& c) {
  std::vector<fs::path> dirs{c.train.run_dir};
  if (!holds(c.train.run_dir, c.checkpoint.dir)) dirs.emplace_back(c.checkpoint.dir);
  return dirs;
}

RunDirectoryLock::RunDirectoryLock(const std::vector<fs::path>& dirs) {
  try {
    for (const auto& dir : dirs) {
      fs::create_directories(dir);
      const fs::path file = dir / kLockFile;
      const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open the run lock: {}", file.string(), std::strerror(errno)));
      fds_.push_back(fd);
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
          throw std::runtime_error(fmt::format("{}: cannot lock: {}", file.string(), std::strerror(errno)));
        throw std::runtime_error(fmt::format(
            "{}: another `rwkv train`{} is using this run directory (it holds {}); wait for it to finish or stop it, "
            "or give this run another train.run_dir",
            dir.string(), lock_holder(fd), file.string()));
      }
      // The pid only names the holder in a second run's message; the lock holds without it.
      const std::string pid = std::to_string(::getpid());
      [[maybe_unused]] const bool noted =
          ::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
    }
  } catch (...) {
    for (const int fd : fds_) ::close(fd);
    throw;
  }
}

RunDirectoryLock::~RunDirectoryLock() {
  for (const int fd : fds_) ::close(fd);  // closing the last descriptor releases the flock
}

fs::path archive_earlier_run(const RunConfig& c) {
  const fs::path run_dir = c.train.run_dir;
  const auto steps = list_step_directories(c.checkpoint.dir);
  std::vector<fs::path> files;
  for (const char* name : {"metrics.jsonl", "config.yaml", "tb"})
    if (fs::exists(run_dir / name)) files.push_back(run_dir / name);
  if (steps.empty() && files.empty()) return {};
  const fs::path archive = first_free(run_dir, "previous-", "");
  fs::create_directories(archive / "checkpoints");
  for (const auto& s : steps) move(s, archive / "checkpoints" / s.filename());
  for (const auto& f : files) move(f, archive / f.filename());
  return archive;
}

void check_fresh_start(const RunConfig& c, const std::string& why) {
  const auto steps = list_step_directories(c.checkpoint.dir);
  if (steps.empty()) return;
  throw ConfigError(fmt::format(
      "{}: {}, but checkpoint.dir {} holds {} checkpoint director{} of an earlier run (newest: {}); starting over "
      "would overwrite them. Pass --restart (checkpoint.resume: restart) to move them and metrics.jsonl into "
      "{}/previous-N/ and start at step 0, or give this run another train.run_dir",
      c.file, why, c.checkpoint.dir, steps.size(), steps.size() == 1 ? "y" : "ies", steps.back().filename().string(),
      c.train.run_dir));
}

fs::path rotate_metrics(const RunConfig& c) {
  const fs::path metrics = fs::path(c.train.run_dir) / "metrics.jsonl";
  if (!fs::exists(metrics)) return {};
  const fs::path to = first_free(c.train.run_dir, "metrics.", ".jsonl");
  move(metrics, to);
  return to;
}

fs::path rotate_tensorboard(const RunConfig& c) {
  const fs::path tb = fs::path(c.train.run_dir) / "tb";
  if (!fs::exists(tb)) return {};
  const fs::path to = first_free(c.train.run_dir, "tb.", "");
  move(tb, to);
  return to;
}

void set_aside_newer_checkpoints(const RunConfig& c, int64_t step, const std::function<void(const std::string&)>& warn) {
  for (const auto& s : list_step_directories(c.checkpoint.dir)) {
    if (checkpoint_step(s) <= step) continue;
    const std::string name = "unreadable-" + s.filename().string();
    const fs::path to = fs::exists(s.parent_path() / name) ? first_free(s.parent_path(), name + "-", "") : s.parent_path() / name;
    move(s, to);
    warn(fmt::format("{} did not load; kept as {} (the run continues from step {})", s.string(), to.string(), step));
  }
}

}  // namespace rwkv::trainer
