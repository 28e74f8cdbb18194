#include "trainer/train/memory_check.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "kernels/cuda_runtime_info.h"
#include "trainer/config/yaml_section.h"
#include "trainer/dist/memory_plan.h"
#include "trainer/train/train_step.h"

namespace rwkv::trainer {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// A "Key:   N kB" line of /proc/meminfo in bytes.
std::optional<double> meminfo_bytes(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(key.size() + 1));
    double kb = 0;
    if (fields >> kb) return kb * 1024.0;
  }
  return std::nullopt;
}

// The first number in a cgroup file; nullopt for "max" (no limit) or an unreadable file.
std::optional<double> cgroup_number(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word == "max") return std::nullopt;
  try {
    return std::stod(word);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string gib(double bytes) { return fmt::format("{:.1f} GiB", bytes / kGiB); }

}  // namespace

std::optional<AvailableMemory> host_available_memory() {
  std::ifstream in("/proc/meminfo");
  if (!in) return std::nullopt;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto available = meminfo_bytes(text, "MemAvailable");
  if (!available) return std::nullopt;
  AvailableMemory out{*available + meminfo_bytes(text, "SwapFree").value_or(0),
                      "MemAvailable + SwapFree in /proc/meminfo"};
  // A container's limit (cgroup v2) is what the OOM killer enforces, whatever the host has free.
  const auto limit = cgroup_number("/sys/fs/cgroup/memory.max");
  const auto used = cgroup_number("/sys/fs/cgroup/memory.current");
  if (limit && used && *limit - *used < out.bytes) {
    out.bytes = std::max(0.0, *limit - *used);
    out.source = "the cgroup's memory.max less memory.current (/sys/fs/cgroup)";
  }
  return out;
}

std::optional<AvailableMemory> device_available_memory(const torch::Device& device) {
  if (!device.is_cuda()) return std::nullopt;
  uint64_t free = 0, total = 0;
  if (!kernels::cuda_device_memory(device.has_index() ? device.index() : 0, free, total)) return std::nullopt;
  return AvailableMemory{static_cast<double>(free), fmt::format("free on {} (cudaMemGetInfo)", device.str())};
}

RunMemoryNeed run_memory_need(const RunConfig& config, const torch::Device& device, int world_size) {
  const bool bf16 = compute_dtype(config, device) == torch::kBFloat16;
  RunMemoryNeed need;
  for (size_t i = 0; i < config.stages.size(); ++i) {
    const Stage& s = config.stages[i];
    const PlanRequest req{.model = config.model, .gpus = world_size, .micro_batch = s.micro_batch,
                          .ctx_len = s.ctx_len, .segment_len = s.segment_len, .compute_bytes = bf16 ? 2 : 4,
                          .bucket_bytes = config.train.grad_bucket_mb * (1 << 20)};
    const MemoryEstimate e = estimate_memory(req, sharding_of(config.train.zero_stage));
    const double total = e.total(config.train.activation_checkpointing);
    if (i == 0 || total > need.bytes) {
      need = {total, e.weights, e.grads, e.master, e.adam, std::max(e.staging, e.update_buffers),
              e.backward_peak(config.train.activation_checkpointing) - e.head_staging, i};
    }
  }
  return need;
}

void check_run_fits(const RunConfig& config, const torch::Device& device, int world_size, int ranks_here,
                    const std::optional<AvailableMemory>& available) {
  if (!available) return;
  const RunMemoryNeed need = run_memory_need(config, device, world_size);
  const double here = need.bytes * std::max(1, ranks_here);
  if (here <= available->bytes) return;
  const ModelConfig& m = config.model;
  const Stage& s = config.stages[need.stage];
  std::string parts;
  for (const auto& [name, bytes] : {std::pair{"weights", need.weights}, {"gradients", need.grads},
                                    {"fp32 master weights", need.master}, {"Adam", need.adam},
                                    {"collective buffers", need.buffers},
                                    {"activations", need.activations}})
    if (bytes > 0) parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", name, gib(bytes));
  const std::string ranks =
      ranks_here > 1 ? fmt::format(" × {} ranks on this host = {}", ranks_here, gib(here)) : std::string();
  throw ConfigError(fmt::format(
      "{}: the run does not fit in memory: model.n_layer {}, model.n_embd {}, model.vocab_size {} ({:.3g} "
      "parameters) with train.micro_batch {} × ctx_len {}{} (stage {}) need ≈ {} per rank on {}{} by `rwkv "
      "plan`'s estimate ({}; it errs low), but only {} is available ({}). Reduce the model or the micro-batch, or shard the state with "
      "train.zero_stage and more ranks, or set train.activation_checkpointing / train.segment_len; "
      "`rwkv plan {}` shows the options",
      config.file, m.n_layer, m.n_embd, m.vocab_size, planned_parameter_count(m), s.micro_batch,
      s.ctx_len, s.segment() < s.ctx_len ? fmt::format(" in segments of {}", s.segment()) : std::string(),
      need.stage, gib(need.bytes), device.str(), ranks, parts, gib(available->bytes), available->source,
      config.file));
}

void check_run_fits(const RunConfig& config, const torch::Device& device, int world_size) {
  if (device.is_cuda()) return check_run_fits(config, device, world_size, 1, device_available_memory(device));
  int ranks_here = 1;
  if (const char* v = std::getenv("LOCAL_WORLD_SIZE")) ranks_here = std::max(1, std::atoi(v));
  check_run_fits(config, device, world_size, ranks_here, host_available_memory());
}

}  // namespace rwkv::trainer
