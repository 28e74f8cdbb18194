#include "trainer/checkpoint/checkpoint.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "common/durable_file.h"
#include "trainer/io/pth_reader.h"
#include "trainer/io/pth_writer.h"

namespace rwkv::trainer {
namespace fs = std::filesystem;
namespace {

constexpr const char* kMarker = "COMPLETE";
constexpr const char* kFiles[] = {"weights.pt", "optimizer.pt", "rng.pt", "state.json", "config.yaml"};

std::vector<char> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(p.string() + ": cannot open");
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

// weights.pt, optimizer.pt and rng.pt are torch.save-format files (trainer/io/pth_writer.h), so
// `torch.load(path, weights_only=True)` opens them. Checkpoints written before that used LibTorch's
// pickle_save (the same zip container, but its pickle tags the dict with a global the weights-only
// unpicklers refuse, ours included); they are still read, through pickle_load.
NamedTensors read_tensor_file(const fs::path& file, const std::vector<char>& bytes) {
  try {
    return io::read_pth(file);
  } catch (const std::exception& pth_error) {
    NamedTensors out;
    try {
      const auto value = torch::pickle_load(bytes);
      for (const auto& kv : value.toGenericDict()) out.push_back({kv.key().toStringRef(), kv.value().toTensor()});
    } catch (const std::exception&) {
      throw std::runtime_error(pth_error.what());  // not the legacy format either: the .pth reader's reason
    }
    return out;
  }
}

nlohmann::json progress_json(const TrainProgress& p) {
  return {{"step", p.step},
          {"stage", p.stage},
          {"stage_step", p.stage_step},
          {"stage_samples", p.stage_samples},
          {"adam_steps", p.adam_steps},
          {"skipped_total", p.skipped_total},
          {"skipped_in_row", p.skipped_in_row},
          {"tokens", p.tokens}};
}

TrainProgress progress_from_json(const nlohmann::json& j) {
  TrainProgress p;
  p.step = j.at("step");
  p.stage = j.at("stage");
  p.stage_step = j.at("stage_step");
  p.stage_samples = j.at("stage_samples");
  p.adam_steps = j.at("adam_steps");
  p.skipped_total = j.at("skipped_total");
  p.skipped_in_row = j.at("skipped_in_row");
  p.tokens = j.at("tokens");
  return p;
}

int64_t step_of(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("step-", 0) != 0) return -1;
  try {
    return std::stoll(name.substr(5));
  } catch (...) {
    return -1;
  }
}

// Every step-* directory, oldest first (complete or not).
std::vector<fs::path> step_dirs(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && step_of(e.path()) >= 0) out.push_back(e.path());
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) { return step_of(a) < step_of(b); });
  return out;
}

// The checkpoint's files into folder `out`; returns the COMPLETE marker describing them (each
// file's size and hash, taken from what is on disk).
nlohmann::json write_checkpoint_files(const fs::path& out, const Checkpoint& ckpt) {
  fs::create_directories(out);
  io::write_pth(out / "weights.pt", ckpt.weights);
  io::write_pth(out / "optimizer.pt", ckpt.optimizer);
  NamedTensors rng{{"cpu", ckpt.cpu_rng}};
  for (size_t i = 0; i < ckpt.cuda_rng.size(); ++i) rng.push_back({"cuda." + std::to_string(i), ckpt.cuda_rng[i]});
  io::write_pth(out / "rng.pt", rng);
  write_file_durably(out / "state.json", nlohmann::json{{"progress", progress_json(ckpt.progress)}}.dump(2));
  write_file_durably(out / "config.yaml", ckpt.config_yaml);
  nlohmann::json marker;
  for (const char* fname : kFiles) {
    const std::vector<char> bytes = read_file(out / fname);
    marker["files"][fname] = {{"bytes", bytes.size()}, {"hash", content_hash(bytes)}};
  }
  return marker;
}

// What a crashed or failed save leaves in the checkpoint folder: write_durably's temporaries
// (".step-N.tmp-PID", ".step-N.old-PID") and the ".tmp-step-N" folders of earlier versions.
bool is_leftover_temporary(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.rfind(".tmp-step-", 0) == 0 ||
         (name.rfind(".step-", 0) == 0 && (name.find(".tmp-") != std::string::npos || name.find(".old-") != std::string::npos));
}

}  // namespace

// 64-bit FNV-1a over 8-byte words (then the tail bytes): fast enough for multi-GB weights and
// sensitive to any flipped or truncated byte, which is all a torn-write check needs.
std::string content_hash(const std::vector<char>& bytes) {
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

void capture_rng(Checkpoint& ckpt) {
  auto cpu = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    ckpt.cpu_rng = cpu.get_state();
  }
  ckpt.cuda_rng.clear();
  if (torch::cuda::is_available()) {
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
      auto g = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(g.mutex());
      ckpt.cuda_rng.push_back(g.get_state());
    }
  }
}

void restore_rng(const Checkpoint& ckpt) {
  auto cpu = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(ckpt.cpu_rng);
  }
  if (torch::cuda::is_available()) {
    const auto n = std::min<size_t>(ckpt.cuda_rng.size(), torch::cuda::device_count());
    for (size_t i = 0; i < n; ++i) {
      auto g = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(ckpt.cuda_rng[i]);
    }
  }
}

std::vector<fs::path> list_checkpoints(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& p : step_dirs(dir))
    if (fs::exists(p / kMarker)) out.push_back(p);
  return out;
}

fs::path save_checkpoint(const fs::path& dir, const Checkpoint& ckpt, int64_t keep) {
  fs::create_directories(dir);
  const fs::path final_path = dir / fmt::format("step-{:08d}", ckpt.progress.step);
  // The folder appears under its name only once every file in it is on disk; an existing
  // checkpoint of this very step (from before a resume) is replaced. COMPLETE comes last.
  nlohmann::json marker;
  write_durably(final_path, [&](const fs::path& temp) { marker = write_checkpoint_files(temp, ckpt); });
  write_file_durably(final_path / kMarker, marker.dump(2));

  // Keep the newest `keep` complete checkpoints; torn ones older than the newest complete go too.
  const auto complete = list_checkpoints(dir);
  const int64_t n_remove = static_cast<int64_t>(complete.size()) - keep;
  for (int64_t i = 0; i < n_remove; ++i) fs::remove_all(complete[static_cast<size_t>(i)]);
  for (const auto& p : step_dirs(dir))
    if (!fs::exists(p / kMarker) && step_of(p) < ckpt.progress.step) fs::remove_all(p);
  for (const auto& e : fs::directory_iterator(dir))
    if (is_leftover_temporary(e.path())) remove_tree(e.path());
  return final_path;
}

Checkpoint load_checkpoint(const fs::path& path, CheckpointParts parts) {
  const auto fail = [&](const std::string& why) -> std::runtime_error {
    return std::runtime_error(fmt::format("checkpoint {}: {}", path.string(), why));
  };
  if (!fs::exists(path / kMarker)) throw fail("no COMPLETE marker (torn write)");
  nlohmann::json marker;
  // One file at a time: read, check against COMPLETE, unpickle what `parts` asks for, drop the bytes.
  const auto verified = [&](const char* fname) {
    try {
      const auto& expect = marker.at("files").at(fname);
      if (!fs::exists(path / fname)) throw fail(std::string(fname) + " is missing");
      auto bytes = read_file(path / fname);
      if (bytes.size() != expect.at("bytes").get<size_t>())
        throw fail(fmt::format("{} has {} bytes, COMPLETE says {}", fname, bytes.size(), expect.at("bytes").get<size_t>()));
      if (content_hash(bytes) != expect.at("hash").get<std::string>())
        throw fail(std::string(fname) + " does not match its hash in COMPLETE (corrupt)");
      return bytes;
    } catch (const nlohmann::json::exception& e) {
      throw fail(std::string("unreadable COMPLETE marker: ") + e.what());
    }
  };
  try {
    const auto m = read_file(path / kMarker);
    marker = nlohmann::json::parse(m.begin(), m.end());
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("unreadable COMPLETE marker: ") + e.what());
  }

  Checkpoint c;
  const bool all = parts == CheckpointParts::all;
  try {
    for (const char* fname : kFiles) {
      const std::vector<char> bytes = verified(fname);
      const std::string name = fname;
      if (name == "weights.pt") {
        c.weights = read_tensor_file(path / fname, bytes);
      } else if (name == "optimizer.pt") {
        if (all) c.optimizer = read_tensor_file(path / fname, bytes);
      } else if (name == "rng.pt") {
        if (!all) continue;
        const NamedTensors rng = read_tensor_file(path / fname, bytes);
        const torch::Tensor* cpu = find_tensor(rng, "cpu");
        if (cpu == nullptr) throw fail("rng.pt has no 'cpu' generator state");
        c.cpu_rng = *cpu;
        for (size_t i = 0; const torch::Tensor* g = find_tensor(rng, "cuda." + std::to_string(i)); ++i) c.cuda_rng.push_back(*g);
      } else if (name == "state.json") {
        const auto state = nlohmann::json::parse(bytes.begin(), bytes.end());
        c.progress = progress_from_json(state.at("progress"));
      } else {
        c.config_yaml.assign(bytes.begin(), bytes.end());
      }
    }
  } catch (const std::runtime_error&) {
    throw;
  } catch (const std::exception& e) {
    throw fail(std::string("unreadable content: ") + e.what());
  }
  return c;
}

std::optional<std::pair<fs::path, Checkpoint>> load_latest_checkpoint(
    const fs::path& dir, const std::function<void(const std::string&)>& warn, CheckpointParts parts) {
  auto dirs = step_dirs(dir);
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    try {
      return std::make_pair(*it, load_checkpoint(*it, parts));
    } catch (const std::exception& e) {
      warn(std::string(e.what()) + "; skipped");
    }
  }
  return std::nullopt;
}

}  // namespace rwkv::trainer
