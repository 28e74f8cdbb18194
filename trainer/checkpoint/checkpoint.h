#pragma once
// Whole-training-state checkpoints (trainer/README.md "Checkpoints").
//
// Layout: <dir>/step-00001234/ holding
//   shard-00000-of-00004.safetensors  one per rank of the run that wrote it: that rank's flat
//                 ranges of the fp32 weights and of both Adam moments, as 1-D tensors named
//                 "weights@<begin>", "exp_avg@<begin>", "exp_avg_sq@<begin>" (<begin>: where the
//                 range starts in the flat view, the parameters concatenated in module order),
//                 and its RNG states "rng.cpu", "rng.cuda.<N>"
//   index.json    the flat view (each parameter's name and shape, in order) and which ranges each
//                 shard file holds: a reader opens only the files, and reads only the byte
//                 ranges, of the slices it needs
//   state.json    step counters (TrainProgress), Adam's step count
//   config.yaml   the effective run config (RunConfig::to_yaml)
//   COMPLETE      written last: size and 64-bit hash of every file above
// Every rank writes its shard into the shared temporary folder .step-N.tmp-shards at the same
// time; rank 0 writes index.json and COMPLETE into it, then renames the folder into place, all
// through common/durable_file.h (fsync of every file and of the folders), so a step-N directory
// appears complete or not at all. A directory without COMPLETE, or
// whose files do not match it, is torn or corrupt: the readers skip it with a warning.
//
// Checkpoints of the single-file format (weights.pt, optimizer.pt, rng.pt: torch.save-format or,
// earlier, LibTorch pickle_save dicts) still load, through the same reader.
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

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

// The whole state in one process's memory: what inference, export and the tests read.
struct Checkpoint {
  TrainProgress progress;
  NamedTensors weights, optimizer;       // optimizer: "exp_avg.<name>", "exp_avg_sq.<name>"
  torch::Tensor cpu_rng;                 // at::Generator::get_state() of the default CPU generator
  std::vector<torch::Tensor> cuda_rng;   // one per device, empty on CPU runs
  std::string config_yaml;
};

// The default generators' states into cpu_rng / cuda_rng, and back.
void capture_rng(torch::Tensor& cpu_rng, std::vector<torch::Tensor>& cuda_rng);
void restore_rng(const torch::Tensor& cpu_rng, const std::vector<torch::Tensor>& cuda_rng);
inline void capture_rng(Checkpoint& ckpt) { capture_rng(ckpt.cpu_rng, ckpt.cuda_rng); }
inline void restore_rng(const Checkpoint& ckpt) { restore_rng(ckpt.cpu_rng, ckpt.cuda_rng); }

// A run [begin, end) of the flat view.
struct FlatRange {
  int64_t begin = 0, end = 0;
};

// One rank's part of a checkpoint, already copied to host memory.
struct CheckpointShard {
  int64_t step = 0;
  int rank = 0, world_size = 1;
  std::vector<FlatRange> ranges;               // ascending, disjoint
  torch::Tensor weights, exp_avg, exp_avg_sq;  // 1-D fp32 on the CPU: the ranges concatenated
  torch::Tensor cpu_rng;
  std::vector<torch::Tensor> cuda_rng;
};

// A file of a checkpoint as COMPLETE records it: {"<file name>": {"bytes": n, "hash": "<hex>"}, …}.
using FileRecords = nlohmann::json;

// The shared temporary folder the ranks write step `step`'s files into, under `dir`.
std::filesystem::path shard_folder(const std::filesystem::path& dir, int64_t step);

// The flat view: each parameter's name and shape, in order.
using FlatLayout = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// Rank `shard.rank`'s file into `folder` (durably); returns its record. Throws, naming the step
// and the parameter, when a range holds a NaN or an infinity: a checkpoint is resumed as the last
// good state, so one of non-finite state is never written.
FileRecords write_checkpoint_shard(const std::filesystem::path& folder, const CheckpointShard& shard,
                                   const FlatLayout& params);

// Rank 0, once every rank's shard is durable: state.json, config.yaml and index.json (the ranges of
// every rank, `ranges[r]`) into `folder` (anything else in it, a crashed earlier save's leftovers,
// is removed first), then COMPLETE listing `shards` and those three, then the folder renamed to
// <dir>/step-<progress.step> (a checkpoint of that step from before a resume is replaced). Then
// keeps only the newest `keep` complete checkpoints among it and the older ones (a newer step
// belongs to no run that led here: never removed; each removed one takes a temporary name first)
// and removes leftover temporary folders. Returns the new checkpoint's path.
std::filesystem::path finish_checkpoint(const std::filesystem::path& dir, const std::filesystem::path& folder,
                                        const TrainProgress& progress, const std::string& config_yaml,
                                        const FlatLayout& params,
                                        const std::vector<std::vector<FlatRange>>& ranges, const FileRecords& shards,
                                        int64_t keep);

// `ckpt` written by one process as a one-shard checkpoint (write_checkpoint_shard, then
// finish_checkpoint); ckpt.optimizer must hold both moments of every weight.
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const Checkpoint& ckpt, int64_t keep);

// An open checkpoint directory of either format. Opening checks every file against COMPLETE
// (streamed: no file is held in memory whole) and reads the small files; tensors are read on demand.
class CheckpointReader {
 public:
  // Throws std::runtime_error naming the directory and the problem (no COMPLETE marker, a file
  // whose size or hash differs, an unreadable index or header).
  explicit CheckpointReader(const std::filesystem::path& path);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::filesystem::path& path() const;
  const TrainProgress& progress() const;
  const std::string& config_yaml() const;

  // The fp32 weights whole, in the order they were saved (read parameter by parameter).
  NamedTensors weights();
  // Elements [offset, offset + length) of the flattened tensor `key` ("exp_avg.<name>",
  // "exp_avg_sq.<name>", or a weight's name), whose shape must be `shape`: a 1-D fp32 CPU tensor.
  // A sharded checkpoint reads only those bytes, from the files holding them.
  torch::Tensor read_slice(const std::string& key, c10::IntArrayRef shape, int64_t offset, int64_t length);
  // The RNG states rank `rank` saved; rank 0's when the writing run had fewer ranks (and for
  // single-file checkpoints, which hold only rank 0's).
  void rng(int rank, torch::Tensor& cpu_rng, std::vector<torch::Tensor>& cuda_rng);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What load_checkpoint reads back: everything, or only what inference and export need (weights,
// progress, config), leaving optimizer and rng empty.
enum class CheckpointParts { all, weights };

// The whole checkpoint in memory, through CheckpointReader (rank 0's RNG states).
Checkpoint load_checkpoint(const std::filesystem::path& path, CheckpointParts parts = CheckpointParts::all);

// The newest checkpoint under `dir` that opens; each torn or corrupt newer one is reported through
// `warn` and skipped. nullopt when there is none (or `dir` does not exist).
std::optional<CheckpointReader> open_latest_checkpoint(const std::filesystem::path& dir,
                                                       const std::function<void(const std::string&)>& warn);
// The same, loaded whole.
std::optional<std::pair<std::filesystem::path, Checkpoint>> load_latest_checkpoint(
    const std::filesystem::path& dir, const std::function<void(const std::string&)>& warn,
    CheckpointParts parts = CheckpointParts::all);

// The hash COMPLETE records for each file's bytes (64-bit FNV-1a variant, as hex): a check against
// torn and flipped bytes, not a cryptographic digest. file_hash streams a file through the same.
std::string content_hash(const std::vector<char>& bytes);
std::string file_hash(const std::filesystem::path& path);

// Complete-looking checkpoint directories under `dir` (with a COMPLETE file), oldest first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir);
// Every step-N directory under `dir`, complete, torn or corrupt, oldest first.
std::vector<std::filesystem::path> list_step_directories(const std::filesystem::path& dir);
// N of a step-N directory's name; -1 for any other name.
int64_t checkpoint_step(const std::filesystem::path& path);

}  // namespace rwkv::trainer
