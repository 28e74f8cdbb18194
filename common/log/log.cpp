// The one translation unit that includes spdlog (and so Debian's fmt 9): see log.h and
// common/log/CMakeLists.txt for why nothing else may.
#include "common/log/log.h"

#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace rwkv::logging {
namespace {

constexpr std::size_t kEarlyMessages = 1024;  // held for the log file until it opens

spdlog::level::level_enum spd(Level l) {
  switch (l) {
    case Level::trace: return spdlog::level::trace;
    case Level::debug: return spdlog::level::debug;
    case Level::info: return spdlog::level::info;
    case Level::warn: return spdlog::level::warn;
    case Level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

// The console's level word: none for info (most lines), "warning: " as the binary always wrote it.
class ConsoleLevel final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view word = msg.level == spdlog::level::info ? ""
                                  : msg.level == spdlog::level::warn ? "warning: "
                                  : msg.level == spdlog::level::err  ? "error: "
                                  : msg.level == spdlog::level::debug ? "debug: "
                                                                      : "trace: ";
    dest.append(word.data(), word.data() + word.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<ConsoleLevel>(); }
};

std::string rank_tag(const Setup& s) { return s.world_size > 1 ? "[rank " + std::to_string(s.rank) + "] " : ""; }

std::unique_ptr<spdlog::formatter> console_format(const Setup& s) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<ConsoleLevel>('*').set_pattern("%H:%M:%S " + rank_tag(s) + "%^%*%$%v");
  return f;
}

std::unique_ptr<spdlog::formatter> file_format(const Setup& s) {
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e " + rank_tag(s) + "%-7l %v");
}

// The sinks are single-threaded ones behind this one mutex, which also guards their replacement.
struct Log {
  std::mutex mutex;
  Setup setup;
  std::shared_ptr<spdlog::sinks::stderr_color_sink_st> console = std::make_shared<spdlog::sinks::stderr_color_sink_st>();
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_st> early =
      std::make_shared<spdlog::sinks::ringbuffer_sink_st>(kEarlyMessages);
  std::shared_ptr<spdlog::sinks::rotating_file_sink_st> file;
  spdlog::logger logger{"rwkv"};
  // A sink that cannot write (the log file on a full disk) is reported once when it starts failing,
  // not at every line; the message itself still reaches the other sinks.
  bool failing = false, failed_now = false;

  Log() {
    console->set_formatter(console_format(setup));
    logger.flush_on(spdlog::level::trace);  // every line reaches the disk: a crash keeps all that came before
    logger.set_error_handler([this](const std::string& what) { failed(what); });
    attach();
  }

  void failed(const std::string& what) {
    if (!failing)
      std::fprintf(stderr, "warning: the log cannot write: %s (lines are lost until it can again)\n", what.c_str());
    failing = failed_now = true;
  }

  // A message into the file alone, past the logger (no exception escapes: main.cpp's error path and
  // the terminate handler call this).
  void to_file(const spdlog::details::log_msg& msg) {
    try {
      file->log(msg);
      file->flush();
    } catch (const std::exception& e) {
      failed(e.what());
    }
  }

  // The logger's sinks from the members, under `mutex`.
  void attach() {
    auto& sinks = logger.sinks();
    sinks.clear();
    if (setup.console) sinks.push_back(console);
    if (early) sinks.push_back(early);
    if (file) sinks.push_back(file);
    logger.set_level(spd(setup.level));
  }
};

Log& the_log() {
  static Log log;
  return log;
}

}  // namespace

void configure(const Setup& setup) {
  Log& l = the_log();
  const std::lock_guard lock(l.mutex);
  l.setup = setup;
  l.console->set_formatter(console_format(setup));
  if (l.file) l.file->set_formatter(file_format(setup));
  l.attach();
}

void open_file(const std::filesystem::path& path, std::size_t max_bytes, std::size_t keep) {
  Log& l = the_log();
  const std::lock_guard lock(l.mutex);
  try {
    l.file = std::make_shared<spdlog::sinks::rotating_file_sink_st>(path.string(), max_bytes, keep);
  } catch (const spdlog::spdlog_ex& e) {
    throw std::runtime_error(path.string() + ": cannot open the log file: " + e.what());
  }
  l.file->set_formatter(file_format(l.setup));
  if (l.early) {
    for (const auto& msg : l.early->last_raw()) l.to_file(msg);
    l.early.reset();
  }
  l.attach();
}

bool enabled(Level level) {
  Log& l = the_log();
  const std::lock_guard lock(l.mutex);
  return l.logger.should_log(spd(level));
}

void write(Level level, std::string_view message) {
  Log& l = the_log();
  const std::lock_guard lock(l.mutex);
  l.failed_now = false;
  l.logger.log(spd(level), spdlog::string_view_t(message.data(), message.size()));
  if (!l.failed_now) l.failing = false;
}

void error_to_file(std::string_view message) {
  Log& l = the_log();
  const std::lock_guard lock(l.mutex);
  const spdlog::details::log_msg msg(l.logger.name(), spdlog::level::err,
                                     spdlog::string_view_t(message.data(), message.size()));
  if (l.file) l.to_file(msg);
}

}  // namespace rwkv::logging
