#include "trainer/checkpoint/checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "common/durable_file.h"
#include "trainer/io/pth_reader.h"
#include "trainer/io/safetensors_file.h"

namespace rwkv::trainer {
namespace fs = std::filesystem;
namespace {

constexpr const char* kMarker = "COMPLETE";
constexpr const char* kIndex = "index.json";
constexpr const char* kIndexFormat = "rwkv-sharded-checkpoint";
constexpr const char* kParts[] = {"weights", "exp_avg", "exp_avg_sq"};
constexpr int64_t kCheckChunk = int64_t{1} << 20;  // elements per finiteness check
// The single-file format's files (still read).
constexpr const char* kLegacyFiles[] = {"weights.pt", "optimizer.pt", "rng.pt", "state.json", "config.yaml"};

// 64-bit FNV-1a over 8-byte words, then the tail bytes: fast enough for multi-GB weights and
// sensitive to any flipped or truncated byte, which is all a torn-write check needs.
class Hash64 {
 public:
  // `n` a multiple of 8 except on the last call.
  void add(const char* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h_ = (h_ ^ w) * 1099511628211ull;
      h_ ^= h_ >> 29;
    }
    for (; i < n; ++i) h_ = (h_ ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  }
  std::string hex() const { return fmt::format("{:016x}", h_); }

 private:
  uint64_t h_ = 1469598103934665603ull;
};

std::vector<char> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(p.string() + ": cannot open");
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

// weights.pt, optimizer.pt and rng.pt of single-file checkpoints are torch.save-format files
// (trainer/io/pth_writer.h). Earlier ones used LibTorch's pickle_save (the same zip container,
// but its pickle tags the dict with a global the weights-only unpicklers refuse, ours included);
// they are read through pickle_load.
NamedTensors read_tensor_file(const fs::path& file) {
  try {
    return io::read_pth(file);
  } catch (const std::exception& pth_error) {
    NamedTensors out;
    try {
      const auto value = torch::pickle_load(read_file(file));
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

// What a crashed or failed save leaves in the checkpoint folder: write_durably's temporaries
// (".step-N.tmp-PID", ".step-N.old-PID"), the shard folders (".step-N.tmp-shards") and the
// ".tmp-step-N" folders of earlier versions.
bool is_leftover_temporary(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.rfind(".tmp-step-", 0) == 0 ||
         (name.rfind(".step-", 0) == 0 && (name.find(".tmp-") != std::string::npos || name.find(".old-") != std::string::npos));
}

std::string shard_file_name(int rank, int world_size) {
  return fmt::format("shard-{:05d}-of-{:05d}.safetensors", rank, world_size);
}

// The name of a range's tensor in a shard file.
std::string range_tensor(const std::string& part, int64_t begin) { return part + "@" + std::to_string(begin); }

FileRecords record_of(const fs::path& folder, const std::string& name) {
  return FileRecords{{name, {{"bytes", fs::file_size(folder / name)}, {"hash", file_hash(folder / name)}}}};
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

// Where each parameter starts in the flat view; the last element is the total.
std::vector<int64_t> flat_offsets(const FlatLayout& params) {
  std::vector<int64_t> out{0};
  for (const auto& [name, shape] : params) out.push_back(out.back() + numel_of(shape));
  return out;
}

}  // namespace

std::string content_hash(const std::vector<char>& bytes) {
  Hash64 h;
  h.add(bytes.data(), bytes.size());
  return h.hex();
}

std::string file_hash(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  Hash64 h;
  std::vector<char> chunk(size_t{1} << 20);  // a multiple of 8: only the last read has a tail
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    h.add(chunk.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw std::runtime_error(path.string() + ": read failed");
  return h.hex();
}

void capture_rng(torch::Tensor& cpu_rng, std::vector<torch::Tensor>& cuda_rng) {
  auto cpu = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu_rng = cpu.get_state();
  }
  cuda_rng.clear();
  if (torch::cuda::is_available()) {
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
      auto g = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(g.mutex());
      cuda_rng.push_back(g.get_state());
    }
  }
}

void restore_rng(const torch::Tensor& cpu_rng, const std::vector<torch::Tensor>& cuda_rng) {
  auto cpu = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(cpu_rng);
  }
  if (torch::cuda::is_available()) {
    const auto n = std::min<size_t>(cuda_rng.size(), torch::cuda::device_count());
    for (size_t i = 0; i < n; ++i) {
      auto g = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(cuda_rng[i]);
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

fs::path shard_folder(const fs::path& dir, int64_t step) { return dir / fmt::format(".step-{:08d}.tmp-shards", step); }

FileRecords write_checkpoint_shard(const fs::path& folder, const CheckpointShard& shard, const FlatLayout& params) {
  const std::vector<int64_t> offsets = flat_offsets(params);
  int64_t length = 0, last_end = 0;
  for (const auto& r : shard.ranges) {
    if (r.begin < last_end || r.end <= r.begin || r.end > offsets.back())
      throw std::invalid_argument(fmt::format("checkpoint shard of rank {}: range [{}, {}) is empty, overlaps the one "
                                              "before or passes the {} elements of the flat view",
                                              shard.rank, r.begin, r.end, offsets.back()));
    last_end = r.end;
    length += r.end - r.begin;
  }
  const std::pair<const char*, const torch::Tensor*> parts[] = {
      {kParts[0], &shard.weights}, {kParts[1], &shard.exp_avg}, {kParts[2], &shard.exp_avg_sq}};
  for (const auto& [part, t] : parts) {
    TORCH_CHECK(t->dim() == 1 && t->numel() == length && t->scalar_type() == torch::kFloat32 && t->device().is_cpu(),
                "checkpoint shard of rank ", shard.rank, ": ", part, " must be 1-D fp32 on the CPU with ", length,
                " elements");
    // A checkpoint is resumed as the last good state, so one of non-finite state is never written.
    // Checked a chunk at a time: the check's temporaries stay small next to the shard.
    int64_t at = -1;
    for (int64_t c = 0; c < length && at < 0; c += kCheckChunk) {
      const torch::Tensor chunk = t->narrow(0, c, std::min(kCheckChunk, length - c));
      if (!torch::isfinite(chunk).all().item<bool>()) at = c + torch::isfinite(chunk).logical_not().nonzero()[0][0].item<int64_t>();
    }
    if (at < 0) continue;
    int64_t flat = 0;
    for (const auto& r : shard.ranges) {
      if (at < r.end - r.begin) {
        flat = r.begin + at;
        break;
      }
      at -= r.end - r.begin;
    }
    const size_t param = static_cast<size_t>(std::upper_bound(offsets.begin(), offsets.end(), flat) - offsets.begin() - 1);
    const std::string name = (std::string(part) == "weights" ? "" : std::string(part) + ".") + params[param].first;
    const auto kept = list_checkpoints(folder.parent_path());
    throw std::runtime_error(fmt::format(
        "step {}: not checkpointed: '{}' holds NaN or infinite values (an update made the state non-finite: "
        "check optimizer.eps, lr and grad_clip); the newest complete checkpoint stays {}",
        shard.step, name, kept.empty() ? std::string("(none)") : kept.back().string()));
  }
  // All weights first, then each moment: a weights-only reader reads one stretch of the file.
  NamedTensors tensors;
  for (const auto& [part, t] : parts) {
    int64_t at = 0;
    for (const auto& r : shard.ranges) {
      tensors.push_back({range_tensor(part, r.begin), t->narrow(0, at, r.end - r.begin)});
      at += r.end - r.begin;
    }
  }
  tensors.push_back({"rng.cpu", shard.cpu_rng});
  for (size_t i = 0; i < shard.cuda_rng.size(); ++i) tensors.push_back({"rng.cuda." + std::to_string(i), shard.cuda_rng[i]});
  const std::string name = shard_file_name(shard.rank, shard.world_size);
  io::write_safetensors(folder / name, tensors, std::nullopt, {},
                        {{"format", "rwkv-checkpoint-shard"},
                         {"rank", std::to_string(shard.rank)},
                         {"world_size", std::to_string(shard.world_size)}});
  return record_of(folder, name);
}

fs::path finish_checkpoint(const fs::path& dir, const fs::path& folder, const TrainProgress& progress,
                           const std::string& config_yaml, const FlatLayout& params,
                           const std::vector<std::vector<FlatRange>>& ranges, const FileRecords& shards, int64_t keep) {
  const int world = static_cast<int>(ranges.size());
  nlohmann::json index{{"format", kIndexFormat}, {"version", 1}, {"world_size", world}};
  for (const auto& [name, shape] : params) index["params"].push_back({{"name", name}, {"shape", shape}});
  for (int r = 0; r < world; ++r) {
    const std::string file = shard_file_name(r, world);
    if (!shards.contains(file)) throw std::runtime_error(fmt::format("checkpoint step {}: no record of {} (rank {})", progress.step, file, r));
    nlohmann::json rs = nlohmann::json::array();
    for (const auto& x : ranges[static_cast<size_t>(r)]) rs.push_back({x.begin, x.end});
    index["shards"].push_back({{"file", file}, {"rank", r}, {"ranges", rs}});
  }
  // What a crashed earlier save of this step may have left in the folder goes.
  for (const auto& e : fs::directory_iterator(folder))
    if (!shards.contains(e.path().filename().string())) remove_tree(e.path());
  FileRecords files = shards;
  write_file_durably(folder / "state.json", nlohmann::json{{"progress", progress_json(progress)}}.dump(2));
  write_file_durably(folder / "config.yaml", config_yaml);
  write_file_durably(folder / kIndex, index.dump(1));
  for (const char* name : {"state.json", "config.yaml", kIndex}) files.update(record_of(folder, name));

  // COMPLETE goes into the folder before the folder takes its name: a step-N directory is complete
  // from the moment it appears. (Written after the rename, a crash in between left a step-N
  // without COMPLETE that the next start set aside as unreadable-step-N, a whole checkpoint's worth
  // of disk kept for good: scripts/kill_campaign.py hit that window 2 times in 3 kills.) An
  // existing checkpoint of this very step (from before a resume) is replaced.
  write_file_durably(folder / kMarker, nlohmann::json{{"files", files}}.dump(2));
  const fs::path final_path = dir / fmt::format("step-{:08d}", progress.step);
  commit_durably(folder, final_path);

  // Keep the newest `keep` complete checkpoints; torn ones older than the newest complete go too.
  // Each first takes a temporary name, so a crash part-way through its removal leaves a leftover
  // temporary (removed below by the next save), never a step-N missing some of its files
  // (scripts/kill_campaign.py found one such step-N, its COMPLETE already gone, after a kill).
  const auto retire = [](const fs::path& p) {
    const fs::path gone = temporary_for(p);
    std::error_code failed;
    fs::rename(p, gone, failed);
    remove_tree(failed ? p : gone);
  };
  auto complete = list_checkpoints(dir);
  std::erase_if(complete, [&](const fs::path& p) { return step_of(p) > progress.step; });
  const int64_t n_remove = static_cast<int64_t>(complete.size()) - keep;
  for (int64_t i = 0; i < n_remove; ++i) retire(complete[static_cast<size_t>(i)]);
  for (const auto& p : step_dirs(dir))
    if (!fs::exists(p / kMarker) && step_of(p) < progress.step) retire(p);
  for (const auto& e : fs::directory_iterator(dir))
    if (is_leftover_temporary(e.path())) remove_tree(e.path());
  return final_path;
}

fs::path save_checkpoint(const fs::path& dir, const Checkpoint& ckpt, int64_t keep) {
  FlatLayout params;
  std::vector<torch::Tensor> w, m, v;
  for (const auto& [name, t] : ckpt.weights) {
    params.push_back({name, t.sizes().vec()});
    w.push_back(t.detach().to(torch::kCPU, torch::kFloat32).reshape({-1}));
    for (auto [prefix, out] : {std::pair{"exp_avg.", &m}, std::pair{"exp_avg_sq.", &v}}) {
      const torch::Tensor* moment = find_tensor(ckpt.optimizer, prefix + name);
      if (moment == nullptr || moment->sizes() != t.sizes())
        throw std::invalid_argument(fmt::format("save_checkpoint: no {}{} of shape ({})", prefix, name, fmt::join(t.sizes(), ", ")));
      out->push_back(moment->detach().to(torch::kCPU, torch::kFloat32).reshape({-1}));
    }
  }
  CheckpointShard shard;
  shard.step = ckpt.progress.step;
  shard.ranges = {{0, flat_offsets(params).back()}};
  shard.weights = torch::cat(w);
  shard.exp_avg = torch::cat(m);
  shard.exp_avg_sq = torch::cat(v);
  shard.cpu_rng = ckpt.cpu_rng;
  shard.cuda_rng = ckpt.cuda_rng;
  fs::create_directories(dir);
  const fs::path folder = shard_folder(dir, ckpt.progress.step);
  remove_tree(folder);
  fs::create_directories(folder);
  try {
    const FileRecords rec = write_checkpoint_shard(folder, shard, params);
    return finish_checkpoint(dir, folder, ckpt.progress, ckpt.config_yaml, params, {shard.ranges}, rec, keep);
  } catch (...) {
    remove_tree(folder);  // a failed save leaves no temporary behind
    throw;
  }
}

struct CheckpointReader::Impl {
  fs::path path;
  TrainProgress progress;
  std::string config_yaml;
  bool sharded = false;

  // Sharded: the flat view, and the ranges of every file sorted by where they begin.
  struct Run {
    int64_t begin, end;
    size_t file;
  };
  FlatLayout params;
  std::vector<int64_t> offsets;
  std::unordered_map<std::string, size_t> param_index;
  std::vector<Run> runs;
  std::vector<std::unique_ptr<io::SafetensorsReader>> files;
  std::vector<std::string> file_names;
  std::vector<std::unordered_map<std::string, const io::SafetensorsEntry*>> entries;

  // Single-file: read when first asked for.
  std::optional<NamedTensors> legacy_weights, legacy_optimizer;

  std::runtime_error fail(const std::string& why) const {
    return std::runtime_error(fmt::format("checkpoint {}: {}", path.string(), why));
  }

  const io::SafetensorsEntry& entry(size_t file, const std::string& name) const {
    const auto it = entries[file].find(name);
    if (it == entries[file].end()) throw fail(fmt::format("{} lacks tensor '{}'", file_names[file], name));
    return *it->second;
  }

  void open_index(const nlohmann::json& index) {
    if (index.at("format") != kIndexFormat) throw fail("index.json: not a sharded checkpoint index");
    if (index.at("version") != 1) throw fail(fmt::format("index.json: version {} (this build reads 1)", index.at("version").dump()));
    for (const auto& p : index.at("params")) {
      param_index[p.at("name").get<std::string>()] = params.size();
      params.push_back({p.at("name").get<std::string>(), p.at("shape").get<std::vector<int64_t>>()});
    }
    offsets = flat_offsets(params);
    for (const auto& s : index.at("shards")) {
      const std::string file = s.at("file");
      if (file.find('/') != std::string::npos || !fs::is_regular_file(path / file))
        throw fail(fmt::format("index.json names shard file '{}', which is not in the folder", file));
      files.push_back(std::make_unique<io::SafetensorsReader>(path / file));
      file_names.push_back(file);
      entries.emplace_back();
      for (const auto& e : files.back()->entries()) entries.back()[e.name] = &e;
      for (const auto& r : s.at("ranges")) runs.push_back({r.at(0).get<int64_t>(), r.at(1).get<int64_t>(), files.size() - 1});
    }
    std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.begin < b.begin; });
    // The ranges must tile the flat view, and each file hold its ranges' tensors.
    int64_t expected = 0;
    for (const auto& r : runs) {
      if (r.begin != expected || r.end <= r.begin)
        throw fail(fmt::format("index.json: the shards' ranges leave a gap or overlap at element {}", expected));
      expected = r.end;
      for (const char* part : kParts) {
        const auto& e = entry(r.file, range_tensor(part, r.begin));
        if (e.dtype != torch::kFloat32 || numel_of(e.shape) != r.end - r.begin)
          throw fail(fmt::format("tensor '{}' is not fp32 of {} elements", e.name, r.end - r.begin));
      }
    }
    if (expected != offsets.back())
      throw fail(fmt::format("index.json: the shards' ranges cover {} elements, the parameters {}", expected, offsets.back()));
  }

  torch::Tensor sharded_slice(const std::string& part, const std::string& name, c10::IntArrayRef shape, int64_t offset,
                              int64_t length) {
    const auto it = param_index.find(name);
    if (it == param_index.end()) throw fail(fmt::format("no parameter '{}'", name));
    if (c10::IntArrayRef(params[it->second].second) != shape)
      throw fail(fmt::format("'{}' has shape ({}), expected ({})", name, fmt::join(params[it->second].second, ", "),
                             fmt::join(shape, ", ")));
    const int64_t begin = offsets[it->second] + offset, end = begin + length;
    if (offset < 0 || end > offsets[it->second + 1]) throw fail(fmt::format("elements [{}, {}) of '{}' asked for", offset, offset + length, name));
    torch::Tensor out = torch::empty({length}, torch::kFloat32);
    auto run = std::upper_bound(runs.begin(), runs.end(), begin, [](int64_t x, const Run& r) { return x < r.begin; }) - 1;
    for (int64_t at = begin; at < end; ++run) {
      const int64_t stop = std::min(end, run->end);
      torch::Tensor dst = out.narrow(0, at - begin, stop - at);
      files[run->file]->read_into(entry(run->file, range_tensor(part, run->begin)), at - run->begin, dst);
      at = stop;
    }
    return out;
  }

  const NamedTensors& legacy(std::optional<NamedTensors>& cache, const char* file) {
    if (!cache) cache = read_tensor_file(path / file);
    return *cache;
  }
};

CheckpointReader::CheckpointReader(const fs::path& path) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.path = path;
  if (!fs::exists(path / kMarker)) throw d.fail("no COMPLETE marker (torn write)");
  nlohmann::json marker;
  try {
    const auto m = read_file(path / kMarker);
    marker = nlohmann::json::parse(m.begin(), m.end());
    // Every file against its size and hash, streamed.
    for (const auto& [fname, expect] : marker.at("files").items()) {
      if (fname.find('/') != std::string::npos) throw d.fail(fmt::format("COMPLETE names a file outside the folder: '{}'", fname));
      if (!fs::is_regular_file(path / fname)) throw d.fail(fname + " is missing");
      const auto bytes = fs::file_size(path / fname);
      if (bytes != expect.at("bytes").get<uintmax_t>())
        throw d.fail(fmt::format("{} has {} bytes, COMPLETE says {}", fname, bytes, expect.at("bytes").get<uintmax_t>()));
      if (file_hash(path / fname) != expect.at("hash").get<std::string>())
        throw d.fail(fname + " does not match its hash in COMPLETE (corrupt)");
    }
  } catch (const nlohmann::json::exception& e) {
    throw d.fail(std::string("unreadable COMPLETE marker: ") + e.what());
  }
  const auto& files = marker.at("files");
  d.sharded = files.contains(kIndex);
  const std::vector<const char*> needed = d.sharded ? std::vector<const char*>{kIndex, "state.json", "config.yaml"}
                                                    : std::vector<const char*>(std::begin(kLegacyFiles), std::end(kLegacyFiles));
  for (const char* fname : needed)
    if (!files.contains(fname)) throw d.fail(std::string("COMPLETE does not list ") + fname);
  try {
    const auto state = read_file(path / "state.json");
    d.progress = progress_from_json(nlohmann::json::parse(state.begin(), state.end()).at("progress"));
    const auto config = read_file(path / "config.yaml");
    d.config_yaml.assign(config.begin(), config.end());
    if (d.sharded) {
      const auto index = read_file(path / kIndex);
      d.open_index(nlohmann::json::parse(index.begin(), index.end()));
    }
  } catch (const std::runtime_error&) {
    throw;
  } catch (const std::exception& e) {
    throw d.fail(std::string("unreadable content: ") + e.what());
  }
}

CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

const fs::path& CheckpointReader::path() const { return impl_->path; }
const TrainProgress& CheckpointReader::progress() const { return impl_->progress; }
const std::string& CheckpointReader::config_yaml() const { return impl_->config_yaml; }

NamedTensors CheckpointReader::weights() {
  Impl& d = *impl_;
  if (!d.sharded) return d.legacy(d.legacy_weights, "weights.pt");
  NamedTensors out;
  for (const auto& [name, shape] : d.params)
    out.push_back({name, d.sharded_slice("weights", name, shape, 0, numel_of(shape)).view(shape)});
  return out;
}

torch::Tensor CheckpointReader::read_slice(const std::string& key, c10::IntArrayRef shape, int64_t offset,
                                           int64_t length) {
  Impl& d = *impl_;
  const bool sq = key.rfind("exp_avg_sq.", 0) == 0, avg = !sq && key.rfind("exp_avg.", 0) == 0;
  if (d.sharded) {
    const char* part = sq ? kParts[2] : avg ? kParts[1] : kParts[0];
    return d.sharded_slice(part, sq || avg ? key.substr(key.find('.') + 1) : key, shape, offset, length);
  }
  const NamedTensors& all = sq || avg ? d.legacy(d.legacy_optimizer, "optimizer.pt") : d.legacy(d.legacy_weights, "weights.pt");
  const torch::Tensor* t = find_tensor(all, key);
  if (t == nullptr) throw d.fail(fmt::format("no '{}' in {}", key, sq || avg ? "optimizer.pt" : "weights.pt"));
  if (t->sizes() != shape)
    throw d.fail(fmt::format("'{}' has shape ({}), expected ({})", key, fmt::join(t->sizes(), ", "), fmt::join(shape, ", ")));
  if (offset < 0 || offset + length > t->numel()) throw d.fail(fmt::format("elements [{}, {}) of '{}' asked for", offset, offset + length, key));
  return t->reshape({-1}).narrow(0, offset, length).to(torch::kFloat32).contiguous();
}

void CheckpointReader::rng(int rank, torch::Tensor& cpu_rng, std::vector<torch::Tensor>& cuda_rng) {
  Impl& d = *impl_;
  cuda_rng.clear();
  if (!d.sharded) {
    const NamedTensors rng = read_tensor_file(d.path / "rng.pt");
    const torch::Tensor* cpu = find_tensor(rng, "cpu");
    if (cpu == nullptr) throw d.fail("rng.pt has no 'cpu' generator state");
    cpu_rng = *cpu;
    for (size_t i = 0; const torch::Tensor* g = find_tensor(rng, "cuda." + std::to_string(i)); ++i) cuda_rng.push_back(*g);
    return;
  }
  const size_t file = rank >= 0 && static_cast<size_t>(rank) < d.files.size() ? static_cast<size_t>(rank) : 0;
  cpu_rng = d.files[file]->read(d.entry(file, "rng.cpu"));
  for (size_t i = 0; d.entries[file].count("rng.cuda." + std::to_string(i)); ++i)
    cuda_rng.push_back(d.files[file]->read(d.entry(file, "rng.cuda." + std::to_string(i))));
}

Checkpoint load_checkpoint(const fs::path& path, CheckpointParts parts) {
  CheckpointReader reader(path);
  Checkpoint c;
  c.progress = reader.progress();
  c.config_yaml = reader.config_yaml();
  try {
    c.weights = reader.weights();
    if (parts == CheckpointParts::all) {
      for (const char* prefix : {"exp_avg.", "exp_avg_sq."})
        for (const auto& [name, w] : c.weights)
          c.optimizer.push_back({prefix + name, reader.read_slice(prefix + name, w.sizes(), 0, w.numel()).view(w.sizes())});
      reader.rng(0, c.cpu_rng, c.cuda_rng);
    }
  } catch (const std::runtime_error&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("checkpoint {}: unreadable content: {}", path.string(), e.what()));
  }
  return c;
}

std::optional<CheckpointReader> open_latest_checkpoint(const fs::path& dir,
                                                       const std::function<void(const std::string&)>& warn) {
  auto dirs = step_dirs(dir);
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    try {
      return CheckpointReader(*it);
    } catch (const std::exception& e) {
      warn(std::string(e.what()) + "; skipped");
    }
  }
  return std::nullopt;
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
