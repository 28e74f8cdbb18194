#pragma once
// What a run may do to its run directory, checked before it writes anything (README.md "What is
// refused and why"):
//   - train.run_dir and checkpoint.dir must be folders (or not exist yet), metrics.jsonl and
//     config.yaml in the run directory files, tb/ a folder;
//   - one `rwkv train` at a time: rank 0 holds an exclusive flock(2) on <dir>/rwkv.lock of the
//     run directory (and of checkpoint.dir when it lies outside) for the whole run. Only rank 0
//     writes files, so only it locks; the other ranks learn its outcome. The kernel drops the
//     lock when the process ends, however it ends, so a crashed run leaves no stale lock;
//   - an earlier run's checkpoints are never started over: a fresh start into a checkpoint.dir
//     that holds step-N directories (checkpoint.resume: never, or auto when none of them loads)
//     is refused; checkpoint.resume: restart (`rwkv train --restart`) first moves them, with
//     metrics.jsonl, config.yaml and tb/, into <run_dir>/previous-N/;
//   - metrics.jsonl of an earlier run is never truncated: a fresh start renames it to
//     metrics.N.jsonl first, and its TensorBoard folder tb/ to tb.N/;
//   - a resumed run moves the step-N directories newer than the checkpoint it resumed from (they
//     did not load) to unreadable-step-N, so neither retention nor a new checkpoint of that step
//     removes them;
//   - the log files are the one exception to "only rank 0 writes": each rank appends to its own,
//     train.log (rank 0) or logs/rank-N.log, which a fresh start, a resume and a restart all
//     continue (a log is the history of every start).
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "trainer/config/run_config.h"

namespace rwkv::trainer {

// Throws ConfigError naming the field when a path of the run is of the wrong kind.
void check_run_paths(const RunConfig& config);

// Creates `dirs` and holds an exclusive lock on <dir>/rwkv.lock in each until destroyed; throws
// naming the directory (and the pid that holds it) when another process has it.
class RunDirectoryLock {
 public:
  explicit RunDirectoryLock(const std::vector<std::filesystem::path>& dirs);
  ~RunDirectoryLock();
  RunDirectoryLock(const RunDirectoryLock&) = delete;
  RunDirectoryLock& operator=(const RunDirectoryLock&) = delete;

 private:
  std::vector<int> fds_;
};

// The log file of rank `rank` (trainer/README.md "Logs"): <run_dir>/train.log for rank 0,
// <run_dir>/logs/rank-N.log for the others.
std::filesystem::path run_log_path(const RunConfig& config, int rank);

// The folders rank 0 locks for `config`: the run directory, and checkpoint.dir when outside it.
std::vector<std::filesystem::path> run_lock_dirs(const RunConfig& config);

// checkpoint.resume: restart: moves the earlier run's step-N directories, metrics.jsonl,
// config.yaml and tb/ into a new <run_dir>/previous-N/ (nothing is deleted); returns that folder, or an
// empty path when there was nothing to move. Rank 0 only.
std::filesystem::path archive_earlier_run(const RunConfig& config);

// Throws ConfigError unless starting at step 0 leaves an earlier run's checkpoints alone: it is
// refused while checkpoint.dir holds step-N directories. `why` says why no checkpoint is resumed.
void check_fresh_start(const RunConfig& config, const std::string& why);

// A fresh start: renames an earlier run's metrics.jsonl to metrics.N.jsonl; returns the new name
// (empty when there was none). Rank 0 only.
std::filesystem::path rotate_metrics(const RunConfig& config);

// A fresh start: renames an earlier run's TensorBoard folder <run_dir>/tb to tb.N; returns the new
// name (empty when there was none). Rank 0 only.
std::filesystem::path rotate_tensorboard(const RunConfig& config);

// A resume from `step`: renames every step-N directory with N > step to unreadable-step-N and
// reports each through `warn`. Rank 0 only.
void set_aside_newer_checkpoints(const RunConfig& config, int64_t step,
                                 const std::function<void(const std::string&)>& warn);

}  // namespace rwkv::trainer
