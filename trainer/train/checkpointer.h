#pragma once
// The run's checkpoint, written collectively (trainer/README.md "Checkpoints"): every rank calls
// save() at the same point of the run; the optimizer gathers the full Adam state, rank 0 writes
// weights, moments, progress, RNG states and the config (trainer/checkpoint/checkpoint.h) while
// the other ranks wait for its word (up to checkpoint.write_timeout_s; a rank 0 that dies or
// freezes meanwhile is noticed within train.dist_timeout_s: trainer/dist/communicator.h on_root),
// and all return the path, or all throw when it failed.
#include <chrono>
#include <filesystem>
#include <string>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/run_config.h"
#include "trainer/dist/communicator.h"
#include "trainer/train/train_step.h"

namespace rwkv::trainer {

class Checkpointer {
 public:
  Checkpointer(const RunConfig& config, TrainStep& step, Communicator& comm);
  // The state after the last complete step of `progress`. Collective.
  std::filesystem::path save(const TrainProgress& progress);

 private:
  TrainStep& step_;
  Communicator& comm_;
  std::filesystem::path dir_;
  int64_t keep_;
  std::string config_yaml_;
  std::chrono::milliseconds write_limit_;  // how long the other ranks wait for rank 0's write
};

}  // namespace rwkv::trainer
