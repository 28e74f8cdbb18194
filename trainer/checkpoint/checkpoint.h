#pragma once
// Whole-training-state checkpoints (trainer/README.md "Checkpoints").
//
// Layout: <dir>/step-00001234/ holding
//   weights.pt    fp32 master weights by state_dict name, in module order
//   optimizer.pt  Adam moments by "exp_avg.<name>" / "exp_avg_sq.<name>"
//   rng.pt        the CPU generator state ("cpu"), and each CUDA device's ("cuda.N") when CUDA is in use
// The three .pt files are torch.save-format dicts (trainer/io/pth_writer.h): Python's
// `torch.load(path, weights_only=True)` reads them. Checkpoints written with LibTorch's pickle_save
// (before the project's own writer was used) still load.
//   state.json    step counters (TrainProgress), Adam's step count
//   config.yaml   the effective run config (RunConfig::to_yaml)
//   COMPLETE      written last: size and 64-bit hash of every file above
// The folder is written under a temporary name and renamed into place, then COMPLETE is written,
// both through common/durable_file.h (fsync of every file and of the folders). A directory without COMPLETE, or whose files do
// not match it, is torn or corrupt: load_latest skips it with a warning.
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "rwkv/named_tensors.h"

namespace rwkv::trainer {

// Where the run stands; everything the loop needs besides tensors to continue exactly.
struct TrainProgress {
  int64_t step = 0;           // steps taken over all stages (skipped ones included)
  int64_t stage = 0;          // index into RunConfig::stages
  int64_t stage_step = 0;     // steps taken in the current stage: the LR schedule position
  int64_t stage_samples = 0;  // samples drawn in the current stage: the sampler position
  int64_t adam_steps = 0;     // updates applied (Adam's bias-correction count)
  int64_t skipped_total = 0;  // non-finite steps skipped, all time
  int64_t skipped_in_row = 0; // ... and in a row up to now
  double tokens = 0;          // tokens trained on, all stages

  bool operator==(const TrainProgress&) const = default;
};

struct Checkpoint {
  TrainProgress progress;
  NamedTensors weights, optimizer;
  torch::Tensor cpu_rng;                 // at::Generator::get_state() of the default CPU generator
  std::vector<torch::Tensor> cuda_rng;   // one per device, empty on CPU runs
  std::string config_yaml;
};

// The default generators' states into ckpt.cpu_rng / cuda_rng, and back.
void capture_rng(Checkpoint& ckpt);
void restore_rng(const Checkpoint& ckpt);

// Writes `ckpt` as <dir>/step-<progress.step>, then keeps only the newest `keep` complete ones
// (and removes leftover temporary directories). Returns the new checkpoint's path.
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const Checkpoint& ckpt, int64_t keep);

// What to read back: everything (resume), or only what inference and export need (weights,
// progress, config), leaving optimizer and rng empty. Either way every file is checked against
// COMPLETE; `weights` never holds the Adam moments (2× the weights) in memory.
enum class CheckpointParts { all, weights };

// Reads one checkpoint directory; throws std::runtime_error naming the directory and the problem
// (no COMPLETE marker, a file whose size or hash differs, unreadable content).
Checkpoint load_checkpoint(const std::filesystem::path& path, CheckpointParts parts = CheckpointParts::all);

// The newest checkpoint under `dir` that loads; each torn or corrupt newer one is reported through
// `warn` and skipped. nullopt when there is none (or `dir` does not exist).
std::optional<std::pair<std::filesystem::path, Checkpoint>> load_latest_checkpoint(
    const std::filesystem::path& dir, const std::function<void(const std::string&)>& warn,
    CheckpointParts parts = CheckpointParts::all);

// The hash COMPLETE records for each file's bytes (64-bit FNV-1a variant, as hex): a check against
// torn and flipped bytes, not a cryptographic digest.
std::string content_hash(const std::vector<char>& bytes);

// Complete-looking checkpoint directories under `dir` (with a COMPLETE file), oldest first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir);

}  // namespace rwkv::trainer
