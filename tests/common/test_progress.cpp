// [common] The progress line of long jobs (common/progress.h): its figures against hand arithmetic,
// and its cadence (plain lines every tenth or 30 s, a live line at most twice a second) under an
// injected clock, so nothing here waits.
#include <catch2/catch.hpp>

#include <string>

#include "common/progress.h"

using rwkv::format_duration;
using rwkv::format_progress;
using rwkv::ProgressReporter;
using rwkv::ProgressUnit;

namespace {

// The reporter's clock and output, set and read by the test.
struct Screen {
  double now = 100;
  std::string out;
  ProgressReporter reporter(const std::string& label, ProgressUnit unit, bool live) {
    return ProgressReporter(
        label, unit, live, [this](const std::string& s) { out += s; }, [this] { return now; });
  }
  std::string take() { return std::exchange(out, std::string()); }
};

}  // namespace

TEST_CASE("progress figures: amount in the total's unit, rate, ETA at the mean rate", "[common]") {
  // 2.5e6 tokens left at 1.5e6 / 10 s = 150k tokens/s: 16.7 s.
  CHECK(format_progress(ProgressUnit::tokens, 1'500'000, 4'000'000, 10) ==
        "1.5/4.0M tokens (37%)  150.0k tokens/s  ETA 0:00:16");
  CHECK(format_progress(ProgressUnit::bytes, 0, 2'500'000'000, 5) == "0.0/2.5 GB (0%)  - B/s  ETA -");
  CHECK(format_progress(ProgressUnit::bytes, 512, 900, 0) == "512/900 B (56%)  - B/s  ETA -");
  CHECK(format_progress(ProgressUnit::tokens, 0, 0, 1) == "0/0 tokens (100%)  - tokens/s  ETA -");
  // More done than announced (a file grew): capped at 100%, nothing left.
  CHECK(format_progress(ProgressUnit::bytes, 1200, 1000, 2) == "1.2/1.0 kB (100%)  600 B/s  ETA 0:00:00");
  // 7.5e12 bytes left at 0.5e12 / 1000 s: 4 h 10 min.
  CHECK(format_progress(ProgressUnit::bytes, 500'000'000'000, 8'000'000'000'000, 1000) ==
        "0.5/8.0 TB (6%)  500.0 MB/s  ETA 4:10:00");
  CHECK(format_duration(3725.9) == "1:02:05");
  CHECK(format_duration(360000) == "100:00:00");
  CHECK(format_duration(-3) == "0:00:00");
}

TEST_CASE("progress into a log: a line per tenth and at least every 30 s, then the closing line", "[common]") {
  Screen s;
  ProgressReporter r = s.reporter("[job]", ProgressUnit::bytes, false);
  const int64_t total = 50'000'000;
  s.now = 110;
  r.update(4'000'000, total);
  CHECK(s.take().empty());  // under a tenth, 10 s
  s.now = 120;
  r.update(5'000'000, total, "7 docs");
  CHECK(s.take() == "[job] 5.0/50.0 MB (10%)  250.0 kB/s  ETA 0:03:00  7 docs\n");
  s.now = 125;
  r.update(6'000'000, total);
  CHECK(s.take().empty());  // the same tenth, 5 s later
  s.now = 150;
  r.update(7'000'000, total);  // 30 s since the last line: 43e6 left at 140 kB/s
  CHECK(s.take() == "[job] 7.0/50.0 MB (14%)  140.0 kB/s  ETA 0:05:07\n");
  s.now = 151;
  r.update(total, total);
  CHECK(s.take().empty());  // the last tenth is the closing line's
  s.now = 160;
  r.finish();
  CHECK(s.take() == "[job] 50.0/50.0 MB (100%)  833.3 kB/s  in 0:01:00\n");
  r.clear_live_line();
  CHECK(s.take().empty());  // no live line in a log: nothing to take off
}

TEST_CASE("progress on a terminal: one line redrawn at most twice a second, taken off for a message", "[common]") {
  Screen s;
  {
    ProgressReporter r = s.reporter("[eval]", ProgressUnit::tokens, true);
    s.now = 100.1;
    r.update(9, 900);
    CHECK(s.take() == "\r[eval] 9/900 tokens (1%)  90 tokens/s  ETA 0:00:09\033[K");
    s.now = 100.3;
    r.update(30, 900);
    CHECK(s.take().empty());
    s.now = 100.7;
    r.update(70, 900);
    CHECK(s.take() == "\r[eval] 70/900 tokens (7%)  100 tokens/s  ETA 0:00:08\033[K");
    r.clear_live_line();  // a warning is about to go to stderr
    CHECK(s.take() == "\r\033[K");
    r.clear_live_line();
    CHECK(s.take().empty());  // already off
    s.now = 100.8;
    r.update(80, 900);  // drawn again at once, 0.1 s after the last drawing
    CHECK(s.take() == "\r[eval] 80/900 tokens (8%)  100 tokens/s  ETA 0:00:08\033[K");
    s.now = 109;
    r.update(900, 900);
    s.take();
    r.finish();
    CHECK(s.take() == "\r[eval] 900/900 tokens (100%)  100 tokens/s  in 0:00:09\033[K\n");
  }
  CHECK(s.take().empty());  // closed: nothing more at the end
  {
    ProgressReporter r = s.reporter("[export]", ProgressUnit::bytes, true);
    r.update(1, 2);
    s.take();
  }  // left without finish (the job threw): the line is ended so an error starts on its own line
  CHECK(s.take() == "\n");
  {
    ProgressReporter r = s.reporter("[prep]", ProgressUnit::bytes, false);
    r.finish();  // no update came: nothing to report
  }
  CHECK(s.take().empty());
}
