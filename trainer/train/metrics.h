#pragma once
// The metrics of a run: one printed line and one metrics.jsonl record per logged step, with the
// same fields, and one of each per validation (trainer/train/validation.h). MFU counts 6(13LD² + VD) FLOPs per trained token (rwkv/README.md "Shapes"; trainer/README.md "Throughput").
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace rwkv::trainer {

struct MetricsRow {
  int64_t step = 0;            // steps done (after this one)
  int64_t stage = 0;
  double mini_epoch = 0;       // of the current stage, fractional
  double loss = 0;             // mean over the logged interval's applied steps
  double lr = 0;
  double grad_norm = 0;        // before clipping, of the last step
  double tokens_per_s = 0;
  std::optional<double> mfu;   // fraction of the peak; none when no peak is known
  double memory_gib = 0;       // resident memory of the process (CPU), or CUDA peak allocated
  double eta_s = 0;            // to the end of the run (max_steps or last stage)
  int64_t skipped = 0;         // non-finite steps skipped so far
};

std::string format_metrics_line(const MetricsRow& row);
std::string metrics_json(const MetricsRow& row);

// One held-out evaluation. Its metrics.jsonl record has step and stage like a training record and
// the figures under val_* keys (val_ctx_len, val_loss, val_perplexity, val_bits_per_byte,
// val_tokens), and no `loss`: readers tell the two kinds apart by the keys.
struct ValidationRow {
  int64_t step = 0;            // steps done when it ran
  int64_t stage = 0;
  int64_t ctx_len = 0;         // of the windows (the stage's)
  int64_t tokens = 0;          // positions scored
  double loss = 0;             // nats per token
  double perplexity = 0;
  double bits_per_byte = 0;
  double seconds = 0;          // wall time (printed only)
};

std::string format_validation_line(const ValidationRow& row);
std::string validation_json(const ValidationRow& row);
// The validation records of a metrics.jsonl, in file order (other and unreadable lines skipped).
std::vector<ValidationRow> read_validation_records(const std::filesystem::path& file);

// Appends records to <run_dir>/metrics.jsonl. Opening for a resumed run drops the records of
// steps after `resume_step` (they were logged by the interrupted run and are about to be redone).
// A failed write (a full disk) is reported through `warn` (default: the process log,
// common/log/log.h) with the path and the errno text, and undone back to the last whole line; its
// record waits and is written, in order, by the next append that succeeds (the file is reopened),
// so a line is never torn and no record is lost while the disk recovers.
class MetricsLog {
 public:
  MetricsLog(const std::filesystem::path& file, int64_t resume_step,
             std::function<void(const std::string&)> warn = {});
  ~MetricsLog();
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&&) = delete;
  void append(const MetricsRow& row);
  void append(const ValidationRow& row);
  // Records that failed to be written so far and wait for the next append.
  size_t waiting() const { return waiting_.size(); }

 private:
  bool write_waiting();
  void append_line(std::string line);

  std::filesystem::path file_;
  std::function<void(const std::string&)> warn_;
  int fd_ = -1;
  std::vector<std::string> waiting_;
};

// Resident set size of this process in GiB (Linux /proc/self/statm).
double resident_memory_gib();

}  // namespace rwkv::trainer
