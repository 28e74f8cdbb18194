#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "common/log/log.h"

namespace rwkv {

namespace {

constexpr double kLiveInterval = 0.5;   // s between redraws of a live line
constexpr double kPlainInterval = 30;   // s at most between plain lines

// The decimal prefix that keeps `v` under 1000: 0 "", 1 k, 2 M, 3 G, 4 T.
int power_of(double v) {
  int p = 0;
  for (; v >= 1000 && p < 4; ++p) v /= 1000;
  return p;
}

const char* prefix(int p) { return std::array<const char*, 5>{"", "k", "M", "G", "T"}[static_cast<size_t>(p)]; }

double scaled(double v, int p) {
  for (int i = 0; i < p; ++i) v /= 1000;
  return v;
}

// "12.3 MB" / "12.3M tokens"; plain counts below 1000 without decimals.
std::string unit_text(ProgressUnit unit, int p) {
  return unit == ProgressUnit::bytes ? fmt::format(" {}B", prefix(p)) : fmt::format("{} tokens", prefix(p));
}

std::string number(double v, int p) { return p == 0 ? fmt::format("{:.0f}", v) : fmt::format("{:.1f}", scaled(v, p)); }

// Done/total, percentage and rate: what the live, plain and closing lines share.
std::string figures(ProgressUnit unit, int64_t done, int64_t total, double elapsed_s, double* rate) {
  const auto d = static_cast<double>(done), t = static_cast<double>(total);
  const int p = power_of(std::max(d, t));
  const int64_t percent = total > 0 ? std::min<int64_t>(100, done * 100 / total) : 100;
  *rate = elapsed_s > 0 && done > 0 ? d / elapsed_s : 0;
  const std::string amount =
      fmt::format("{}/{}{} ({}%)", number(d, p), number(t, p), unit_text(unit, p), percent);
  if (*rate <= 0) return amount + "  -" + (unit == ProgressUnit::bytes ? " B/s" : " tokens/s");
  const int rp = power_of(*rate);
  return fmt::format("{}  {}{}/s", amount, number(*rate, rp), unit_text(unit, rp));
}

}  // namespace

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
}

std::string format_progress(ProgressUnit unit, int64_t done, int64_t total, double elapsed_s) {
  double rate = 0;
  std::string out = figures(unit, done, total, elapsed_s, &rate);
  const double left = static_cast<double>(std::max<int64_t>(0, total - done));
  return out + "  ETA " + (rate > 0 ? format_duration(left / rate) : std::string("-"));
}

namespace {

// A live line's text straight to the terminal; a plain line (always one whole line) into the log.
ProgressReporter::Output standard_output(bool live) {
  if (live)
    return [](const std::string& text) {
      std::fputs(text.c_str(), stderr);
      std::fflush(stderr);
    };
  return [](const std::string& line) {
    logging::info(std::string_view(line).substr(0, line.size() - (line.ends_with('\n') ? 1 : 0)));
  };
}

}  // namespace

ProgressReporter::ProgressReporter(std::string label, ProgressUnit unit)
    : ProgressReporter(
          std::move(label), unit, ::isatty(::fileno(stderr)) != 0, standard_output(::isatty(::fileno(stderr)) != 0),
          [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }) {}

ProgressReporter::ProgressReporter(std::string label, ProgressUnit unit, bool live, Output out, Clock clock)
    : label_(std::move(label)), unit_(unit), live_(live), out_(std::move(out)), clock_(std::move(clock)), start_(clock_()),
      last_write_(start_) {}

ProgressReporter::~ProgressReporter() {
  if (showing_) out_("\n");
}

std::string ProgressReporter::line(bool closing) const {
  const double elapsed = clock_() - start_;
  std::string text = label_ + " ";
  if (closing) {
    double rate = 0;
    text += figures(unit_, done_, total_, elapsed, &rate) + "  in " + format_duration(elapsed);
  } else {
    text += format_progress(unit_, done_, total_, elapsed);
  }
  if (!detail_.empty()) text += "  " + detail_;
  return text;
}

void ProgressReporter::write_line(bool closing) {
  const std::string text = line(closing);
  if (live_) {
    out_("\r" + text + "\033[K" + (closing ? "\n" : ""));
    showing_ = !closing;
  } else {
    out_(text + "\n");
  }
  last_write_ = clock_();
  last_tenth_ = total_ > 0 ? std::min<int64_t>(10, done_ * 10 / total_) : 10;
}

void ProgressReporter::update(int64_t done, int64_t total, const std::string& detail) {
  done_ = done;
  total_ = total;
  detail_ = detail;
  updated_ = true;
  const double since = clock_() - last_write_;
  if (live_) {
    if (!showing_ || since >= kLiveInterval) write_line(false);
    return;
  }
  // The last tenth is the closing line's to report.
  const int64_t tenth = total > 0 ? std::min<int64_t>(10, done * 10 / total) : 10;
  if ((tenth > last_tenth_ && tenth < 10) || since >= kPlainInterval) write_line(false);
}

void ProgressReporter::finish() {
  if (updated_) write_line(true);
}

void ProgressReporter::clear_live_line() {
  if (!showing_) return;
  out_("\r\033[K");
  showing_ = false;  // the next update draws the line again at once
}

}  // namespace rwkv
