#pragma once
// The progress line of a long job (`rwkv prep` over a corpus, `rwkv export` of a large checkpoint,
// `rwkv eval` over a long file): amount done of the total, the rate and the time left.
//
// On a terminal one line redraws itself in place ("\r" … erase to the end of the line), at most
// twice a second. Into a file or a pipe (a log, a CI job) plain lines are written instead, through
// the process log (common/log/log.h, level info), one each time another tenth of the total is done
// and at least every 30 s, so a log stays short and still shows the job is alive. The rate is the mean since the reporter was made, the ETA the rest at
// that rate. The clock and the output are injectable: tests check the text and the cadence
// without waiting.
#include <cstdint>
#include <functional>
#include <string>

namespace rwkv {

enum class ProgressUnit { bytes, tokens };

// done and total as they are reported: bytes in B/kB/MB/GB/TB (decimal), tokens with k/M/G/T.
// "12.3/45.6 MB (27%)  3.4 MB/s  ETA 0:00:10"; rate and ETA read "-" while nothing is done or no
// time has passed.
std::string format_progress(ProgressUnit unit, int64_t done, int64_t total, double elapsed_s);

// "h:mm:ss" of a non-negative number of seconds (truncated to whole seconds).
std::string format_duration(double seconds);

// What the commands hand to the code doing the work: called with the amount done and the total.
using ProgressCallback = std::function<void(int64_t done, int64_t total)>;

class ProgressReporter {
 public:
  using Clock = std::function<double()>;                   // seconds, monotonic
  using Output = std::function<void(const std::string&)>;  // text exactly as it is to appear

  // Live on stderr when stderr is a terminal, else into the process log; `label` leads every line
  // ("[prep]").
  ProgressReporter(std::string label, ProgressUnit unit);
  ProgressReporter(std::string label, ProgressUnit unit, bool live, Output out, Clock clock);
  // Ends a live line that finish() did not close (the job threw), so the error starts a fresh line.
  ~ProgressReporter();
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  // `done` of `total` so far; writes a line when one is due. `detail` follows the figures
  // (prep: documents and tokens).
  void update(int64_t done, int64_t total, const std::string& detail = {});
  // The closing line, written always once an update came: the last figures, with the time the job
  // took instead of the ETA.
  void finish();
  // Takes a live line off the screen so that what comes next on stderr (a warning through the
  // log) starts on a line of its own; the next update draws the line again at once.
  void clear_live_line();

 private:
  std::string line(bool closing) const;
  void write_line(bool closing);

  std::string label_;
  ProgressUnit unit_;
  bool live_;
  Output out_;
  Clock clock_;
  double start_;
  bool updated_ = false;   // an update came
  bool showing_ = false;   // a live line is on the screen, without its newline
  double last_write_ = 0;  // clock time of the last line written
  int64_t last_tenth_ = 0; // tenths of the total done at the last plain line
  int64_t done_ = 0, total_ = 0;
  std::string detail_;
};

}  // namespace rwkv
