#pragma once
// The run's checkpoint, written collectively and in shards (trainer/README.md "Checkpoints",
// trainer/checkpoint/checkpoint.h): every rank calls save() at the same point of the run, copies
// its own flat ranges of the weights and Adam moments (trainer/dist/parallel_optimizer.h
// checkpoint_ranges) and its RNG states to host memory, and writes them as its shard file; rank 0
// waits for every rank's report (sizes and hashes of durable files), then writes the index, the
// progress, the config and COMPLETE. No rank gathers anyone else's state.
//
// With checkpoint.async (the default) save() returns once the copy is taken and a background
// thread writes; the next save(), wait() and the destructor wait for the write in flight first.
// wait() then gives every rank rank 0's word (trainer/dist/communicator.h on_root: up to
// checkpoint.write_timeout_s, a rank 0 that died or froze noticed within train.dist_timeout_s),
// and all throw when the write failed: then no COMPLETE was written, the temporary folder is gone
// and the previous checkpoint stays the newest complete one.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <string>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/run_config.h"
#include "trainer/dist/communicator.h"
#include "trainer/train/train_step.h"

namespace rwkv::trainer {

class Checkpointer {
 public:
  // `note` gets, on rank 0, one line per completed write: how long the loop was blocked and how
  // long the write took.
  Checkpointer(const RunConfig& config, TrainStep& step, Communicator& comm,
               std::function<void(const std::string&)> note = {});
  // Waits for a write in flight (it completes or is cancelled; its outcome is not reported).
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Starts the checkpoint of the state after the last complete step of `progress` (after waiting
  // for the one before); returns the path it will have. Synchronous unless checkpoint.async.
  // Collective.
  std::filesystem::path save(const TrainProgress& progress);
  // Waits for the write in flight and returns its path (the last one when none is in flight);
  // throws on every rank when it failed. Collective.
  std::filesystem::path wait();

 private:
  // This rank's background work: its shard, its report; on rank 0 the other ranks' reports and
  // the rest of the checkpoint. Returns the checkpoint's path (rank 0) or "".
  std::string write(CheckpointShard shard, TrainProgress progress, std::string key);

  TrainStep& step_;
  Communicator& comm_;
  std::filesystem::path dir_;
  int64_t keep_;
  bool async_;
  std::string config_yaml_;
  std::chrono::milliseconds write_limit_;  // how long the ranks wait for each other's writes
  std::function<void(const std::string&)> note_;
  FlatLayout layout_;                      // the parameters' names and shapes, in flat order
  std::future<std::string> in_flight_;
  std::atomic<bool> cancel_{false};
  std::filesystem::path last_;             // the newest checkpoint written (or started)
  int64_t saves_ = 0;
  // Of the save in flight: how long save() blocked the loop, the part of it spent waiting for the
  // write before, and how long its own write took.
  double blocked_s_ = 0, waited_s_ = 0, write_s_ = 0;
};

}  // namespace rwkv::trainer
