// The timing and JSON helpers shared by the `rwkv bench` subcommands (trainer/bench/bench.h).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "trainer/bench/bench.h"

#include "common/durable_file.h"
#include "trainer/config/device.h"

namespace rwkv::bench {

Timing time_runs(int runs, int warmup, const torch::Device& device, const std::function<void()>& fn) {
  if (runs < 1 || warmup < 0) throw std::invalid_argument("bench: runs must be positive and warm-up non-negative");
  const auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < warmup; ++i) fn();
  sync();
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    sync();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return Timing{ms[ms.size() / 2], ms.front(), ms.back(), runs};
}

nlohmann::json to_json(const Timing& t) {
  return {{"median_ms", t.median_ms}, {"min_ms", t.min_ms}, {"max_ms", t.max_ms}, {"runs", t.runs}};
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  write_file_durably(path, j.dump(2) + "\n");
}

torch::Device device_flag(const std::string& value, const std::string& command) {
  try {
    return trainer::resolve_device(value);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(command + ": --device " + e.what());
  }
}

void check_json_path(const std::string& path) {
  if (path.empty()) return;
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  if (!std::filesystem::is_directory(dir))
    throw std::invalid_argument("bench: cannot write --json " + path + ": no directory " + dir.string());
}

}  // namespace rwkv::bench
