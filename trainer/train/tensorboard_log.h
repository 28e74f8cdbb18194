#pragma once
// The run's TensorBoard scalars, in <run_dir>/tb/ (`tensorboard --logdir <run_dir>/tb`): every
// number of each metrics.jsonl record (trainer/train/metrics.h) but its step, under the record's
// field name, at the record's step, so the two never disagree. Rank 0 writes it, as it writes
// metrics.jsonl. The events format is trainer/io/tensorboard_events.h.
//
// Each start of the run (fresh or resumed) appends a new events file whose first event after the
// file version is a SessionLog START at the first step this start trains (resume_step + 1).
// TensorBoard then drops what an interrupted run logged after the checkpoint it resumes from, as
// MetricsLog drops those records from metrics.jsonl: the Python reader on the START, the Rust data
// server because the steps of a series go back.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "trainer/io/tensorboard_events.h"
#include "trainer/train/metrics.h"

namespace rwkv::trainer {

class TensorBoardLog {
 public:
  TensorBoardLog(const std::filesystem::path& dir, int64_t resume_step,
                 std::function<void(const std::string&)> warn = {});

  // The record metrics_json(row) writes to metrics.jsonl.
  void append(const MetricsRow& row);
  // Any metrics.jsonl record: an object with an integer "step"; its other numbers become scalars
  // (null, strings and booleans are no scalars: MFU is null where no peak is known).
  void append(const nlohmann::json& record);
  const std::filesystem::path& path() const { return file_.path(); }

 private:
  io::TensorBoardEventFile file_;
};

}  // namespace rwkv::trainer
