#include "trainer/train/checkpointer.h"

#include <algorithm>
#include <stdexcept>

namespace rwkv::trainer {

Checkpointer::Checkpointer(const RunConfig& config, TrainStep& step, Communicator& comm)
    : step_(step),
      comm_(comm),
      dir_(config.checkpoint.dir),
      keep_(config.checkpoint.keep),
      config_yaml_(config.to_yaml()),
      // Rank 0 alone writes while the others wait: a big checkpoint takes minutes, more than a
      // collective may. A rank 0 that dies meanwhile is noticed at once (its connection closes),
      // so the long wait only covers slow disks.
      wait_(std::max<std::chrono::milliseconds>(
          std::chrono::milliseconds(static_cast<int64_t>(config.train.dist_timeout_s * 1000)),
          std::chrono::minutes(30))) {}

std::filesystem::path Checkpointer::save(const TrainProgress& progress) {
  Checkpoint ck;
  ck.progress = progress;
  ck.progress.adam_steps = step_.optimizer().steps();
  ck.optimizer = step_.optimizer().full_state();
  bool ok = true;
  std::string message;
  if (comm_.is_root()) {
    try {
      ck.weights = step_.params();
      capture_rng(ck);
      ck.config_yaml = config_yaml_;
      message = save_checkpoint(dir_, ck, keep_).string();
    } catch (const std::exception& e) {
      ok = false;
      message = e.what();
    }
  }
  const auto [written, word] = comm_.root_outcome(ok, message, wait_);
  if (!written) throw std::runtime_error(comm_.is_root() ? word : "rank 0 could not write the checkpoint: " + word);
  return word;
}

}  // namespace rwkv::trainer
