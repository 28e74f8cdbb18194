#include "trainer/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace rwkv::trainer {
namespace fs = std::filesystem;
namespace {

constexpr const char* kMarker = "COMPLETE";
constexpr const char* kFiles[] = {"weights.pt", "optimizer.pt", "rng.pt", "state.json", "config.yaml"};

[[noreturn]] void io_fail(const fs::path& p, const std::string& what) {
  throw std::runtime_error(fmt::format("{}: {}: {}", p.string(), what, std::strerror(errno)));
}

void fsync_path(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags);
  if (fd < 0) io_fail(p, "cannot open for fsync");
  if (::fsync(fd) != 0) {
    ::close(fd);
    io_fail(p, "fsync failed");
  }
  ::close(fd);
}

void write_file(const fs::path& p, const char* data, size_t size) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) io_fail(p, "cannot create");
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      io_fail(p, "write failed");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) io_fail(p, "fsync/close failed");
}

std::vector<char> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(p.string() + ": cannot open");
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

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

std::vector<char> pickle_tensors(const std::map<std::string, torch::Tensor>& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : tensors) dict.insert(name, t.detach().to(torch::kCPU).contiguous().clone());
  return torch::pickle_save(c10::IValue(dict));
}

std::map<std::string, torch::Tensor> unpickle_tensors(const std::vector<char>& bytes) {
  std::map<std::string, torch::Tensor> out;
  const auto value = torch::pickle_load(bytes);
  for (const auto& kv : value.toGenericDict()) out[kv.key().toStringRef()] = kv.value().toTensor();
  return out;
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

}  // namespace

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

std::vector<fs::path> list_step_directories(const fs::path& dir) { return step_dirs(dir); }

int64_t checkpoint_step(const fs::path& path) { return step_of(path); }

std::vector<fs::path> list_checkpoints(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& p : step_dirs(dir))
    if (fs::exists(p / kMarker)) out.push_back(p);
  return out;
}

fs::path save_checkpoint(const fs::path& dir, const Checkpoint& ckpt, int64_t keep) {
  fs::create_directories(dir);
  const std::string name = fmt::format("step-{:08d}", ckpt.progress.step);
  const fs::path final_path = dir / name, tmp = dir / (".tmp-" + name);
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  std::map<std::string, std::vector<char>> files;
  files["weights.pt"] = pickle_tensors(ckpt.weights);
  files["optimizer.pt"] = pickle_tensors(ckpt.optimizer);
  std::map<std::string, torch::Tensor> rng{{"cpu", ckpt.cpu_rng}};
  for (size_t i = 0; i < ckpt.cuda_rng.size(); ++i) rng["cuda." + std::to_string(i)] = ckpt.cuda_rng[i];
  files["rng.pt"] = pickle_tensors(rng);
  const std::string state = nlohmann::json{{"progress", progress_json(ckpt.progress)}}.dump(2);
  files["state.json"] = std::vector<char>(state.begin(), state.end());
  files["config.yaml"] = std::vector<char>(ckpt.config_yaml.begin(), ckpt.config_yaml.end());

  nlohmann::json marker;
  for (const auto& [fname, bytes] : files) {
    write_file(tmp / fname, bytes.data(), bytes.size());
    marker["files"][fname] = {{"bytes", bytes.size()}, {"hash", content_hash(bytes)}};
  }
  fsync_path(tmp, O_RDONLY | O_DIRECTORY);
  fs::remove_all(final_path);  // a checkpoint of this very step from before a resume
  fs::rename(tmp, final_path);
  fsync_path(dir, O_RDONLY | O_DIRECTORY);

  const std::string m = marker.dump(2);
  write_file(final_path / ".COMPLETE.tmp", m.data(), m.size());
  fs::rename(final_path / ".COMPLETE.tmp", final_path / kMarker);
  fsync_path(final_path, O_RDONLY | O_DIRECTORY);

  // Keep the newest `keep` complete checkpoints; torn ones older than the newest complete go too.
  auto complete = list_checkpoints(dir);
  std::erase_if(complete, [&](const fs::path& p) { return step_of(p) > ckpt.progress.step; });
  const int64_t n_remove = static_cast<int64_t>(complete.size()) - keep;
  for (int64_t i = 0; i < n_remove; ++i) fs::remove_all(complete[static_cast<size_t>(i)]);
  for (const auto& p : step_dirs(dir))
    if (!fs::exists(p / kMarker) && step_of(p) < ckpt.progress.step) fs::remove_all(p);
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path());
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
        c.weights = unpickle_tensors(bytes);
      } else if (name == "optimizer.pt") {
        if (all) c.optimizer = unpickle_tensors(bytes);
      } else if (name == "rng.pt") {
        if (!all) continue;
        auto rng = unpickle_tensors(bytes);
        c.cpu_rng = rng.at("cpu");
        for (size_t i = 0; rng.count("cuda." + std::to_string(i)); ++i) c.cuda_rng.push_back(rng["cuda." + std::to_string(i)]);
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
