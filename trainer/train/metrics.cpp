#include "trainer/train/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "common/durable_file.h"
#include "common/log/log.h"
#include <vector>

namespace rwkv::trainer {

std::string format_metrics_line(const MetricsRow& r) {
  const auto eta = static_cast<int64_t>(r.eta_s);
  return fmt::format(
      "step {:>7} | stage {} mini-epoch {:.3f} | loss {:.4f} | lr {:.3e} | grad-norm {:.3f} | {:.0f} tok/s | "
      "MFU {} | mem {:.2f} GiB | ETA {}h{:02d}m{:02d}s{}",
      r.step, r.stage, r.mini_epoch, r.loss, r.lr, r.grad_norm, r.tokens_per_s,
      r.mfu ? fmt::format("{:.1f}%", 100 * *r.mfu) : std::string("n/a"), r.memory_gib, eta / 3600, eta / 60 % 60,
      eta % 60, r.skipped ? fmt::format(" | skipped {}", r.skipped) : std::string());
}

std::string metrics_json(const MetricsRow& r) {
  nlohmann::json j{{"step", r.step},         {"stage", r.stage},       {"mini_epoch", r.mini_epoch},
                   {"loss", r.loss},         {"lr", r.lr},             {"grad_norm", r.grad_norm},
                   {"tokens_per_s", r.tokens_per_s}, {"memory_gib", r.memory_gib}, {"eta_s", r.eta_s},
                   {"skipped", r.skipped}};
  j["mfu"] = r.mfu ? nlohmann::json(*r.mfu) : nlohmann::json(nullptr);
  return j.dump();
}

std::string format_validation_line(const ValidationRow& r) {
  return fmt::format("step {:>7} | validation ctx_len {} | loss {:.4f} | perplexity {:.3f} | bits/byte {:.4f} | "
                     "{} tokens in {:.1f}s",
                     r.step, r.ctx_len, r.loss, r.perplexity, r.bits_per_byte, r.tokens, r.seconds);
}

std::string validation_json(const ValidationRow& r) {
  return nlohmann::json{{"step", r.step},
                        {"stage", r.stage},
                        {"val_ctx_len", r.ctx_len},
                        {"val_loss", r.loss},
                        {"val_perplexity", r.perplexity},
                        {"val_bits_per_byte", r.bits_per_byte},
                        {"val_tokens", r.tokens}}
      .dump();
}

std::vector<ValidationRow> read_validation_records(const std::filesystem::path& file) {
  std::vector<ValidationRow> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    try {
      const auto j = nlohmann::json::parse(line);
      if (!j.contains("val_loss")) continue;
      out.push_back({.step = j.at("step").get<int64_t>(),
                     .stage = j.at("stage").get<int64_t>(),
                     .ctx_len = j.at("val_ctx_len").get<int64_t>(),
                     .tokens = j.at("val_tokens").get<int64_t>(),
                     .loss = j.at("val_loss").get<double>(),
                     .perplexity = j.at("val_perplexity").get<double>(),
                     .bits_per_byte = j.at("val_bits_per_byte").get<double>()});
    } catch (const std::exception&) {
      // a torn or foreign line: not a validation record
    }
  }
  return out;
}

MetricsLog::MetricsLog(const std::filesystem::path& file, int64_t resume_step,
                       std::function<void(const std::string&)> warn)
    : file_(file), warn_(warn ? std::move(warn) : [](const std::string& w) { logging::warn(w); }) {
  std::vector<std::string> kept;
  if (std::filesystem::exists(file)) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      try {
        if (nlohmann::json::parse(line).at("step").get<int64_t>() <= resume_step) kept.push_back(line);
      } catch (const std::exception&) {
        // a line torn by the interruption: dropped
      }
    }
    std::string content;
    for (const auto& l : kept) content += l + "\n";
    write_file_durably(file, content);
  }
  fd_ = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error(fmt::format("{}: cannot open for appending: {}", file.string(), std::strerror(errno)));
}

MetricsLog::MetricsLog(MetricsLog&& other) noexcept
    : file_(std::move(other.file_)),
      warn_(std::move(other.warn_)),
      fd_(std::exchange(other.fd_, -1)),
      waiting_(std::move(other.waiting_)) {
  other.waiting_.clear();
}

MetricsLog::~MetricsLog() {
  if (!waiting_.empty() && !write_waiting())
    warn_(fmt::format("{}: {} metrics records could not be written and are lost", file_.string(), waiting_.size()));
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const MetricsRow& row) { append_line(metrics_json(row)); }

void MetricsLog::append(const ValidationRow& row) { append_line(validation_json(row)); }

void MetricsLog::append_line(std::string line) {
  waiting_.push_back(std::move(line) + "\n");
  write_waiting();
}

bool MetricsLog::write_waiting() {
  if (fd_ < 0) fd_ = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  size_t done = 0;
  while (fd_ >= 0 && done < waiting_.size() && append_whole(fd_, waiting_[done])) ++done;
  const bool all = done == waiting_.size();
  if (!all) {
    warn_(fmt::format("{}: cannot write a metrics record: {}; {} record(s) wait and are written with the next one",
                      file_.string(), std::strerror(errno), waiting_.size() - done));
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;  // reopened next time: the file may have been moved or replaced meanwhile
  }
  waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(done));
  return all;
}

double resident_memory_gib() {
  std::ifstream in("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024 * 1024);
}

}  // namespace rwkv::trainer
