#include "trainer/train/checkpointer.h"

#include <fmt/format.h>

#include <stdexcept>

namespace rwkv::trainer {

Checkpointer::Checkpointer(const RunConfig& config, TrainStep& step, Communicator& comm)
    : step_(step),
      comm_(comm),
      dir_(config.checkpoint.dir),
      keep_(config.checkpoint.keep),
      config_yaml_(config.to_yaml()),
      write_limit_(static_cast<int64_t>(config.checkpoint.write_timeout_s * 1000)) {}

namespace {

// The first tensor of `tensors` with a NaN or an infinity; empty when all are finite.
template <class Tensors>
std::string first_non_finite(const Tensors& tensors) {
  for (const auto& [name, t] : tensors)
    if (!torch::isfinite(t.detach()).all().template item<bool>()) return name;
  return {};
}

// A checkpoint is resumed as the last good state, so one of non-finite state is never written.
void check_finite(const Checkpoint& ck, const std::filesystem::path& dir) {
  std::string bad = first_non_finite(ck.weights);
  if (bad.empty()) bad = first_non_finite(ck.optimizer);
  if (bad.empty()) return;
  const auto kept = list_checkpoints(dir);
  throw std::runtime_error(fmt::format(
      "step {}: not checkpointed: '{}' holds NaN or infinite values (an update made the state non-finite: "
      "check optimizer.eps, lr and grad_clip); the newest complete checkpoint stays {}",
      ck.progress.step, bad, kept.empty() ? std::string("(none)") : kept.back().string()));
}

}  // namespace

std::filesystem::path Checkpointer::save(const TrainProgress& progress) {
  Checkpoint ck;
  ck.progress = progress;
  ck.progress.adam_steps = step_.optimizer().steps();
  ck.optimizer = step_.optimizer().full_state();
  return comm_.on_root(
      "write the checkpoint",
      [&] {
        ck.weights = step_.params();
        capture_rng(ck);
        ck.config_yaml = config_yaml_;
        check_finite(ck, dir_);
        return save_checkpoint(dir_, ck, keep_).string();
      },
      write_limit_, "checkpoint.write_timeout_s");
}

}  // namespace rwkv::trainer
