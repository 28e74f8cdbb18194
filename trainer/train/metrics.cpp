#include "trainer/train/metrics.h"

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "common/durable_file.h"
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

MetricsLog::MetricsLog(const std::filesystem::path& file, int64_t resume_step) {
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
  out_.open(file, std::ios::app);
  if (!out_) throw std::runtime_error(file.string() + ": cannot open for appending");
}

void MetricsLog::append(const MetricsRow& row) {
  out_ << metrics_json(row) << "\n";
  out_.flush();
}

double resident_memory_gib() {
  std::ifstream in("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024 * 1024);
}

}  // namespace rwkv::trainer
