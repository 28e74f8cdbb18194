#include "trainer/train/checkpointer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <stdexcept>

#include "common/durable_file.h"

namespace rwkv::trainer {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A host buffer for the copy of `n` elements: pinned when the state is on a GPU, so the copy runs
// at full bus speed and the write never touches device memory.
torch::Tensor host_buffer(int64_t n, const torch::Device& from) {
  return torch::empty({n}, torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(from.is_cuda()));
}

}  // namespace

Checkpointer::Checkpointer(const RunConfig& config, TrainStep& step, Communicator& comm,
                           std::function<void(const std::string&)> note)
    : step_(step),
      comm_(comm),
      dir_(config.checkpoint.dir),
      keep_(config.checkpoint.keep),
      async_(config.checkpoint.async),
      config_yaml_(config.to_yaml()),
      write_limit_(static_cast<int64_t>(config.checkpoint.write_timeout_s * 1000)),
      note_(std::move(note)) {
  for (const auto& [name, p] : step_.params()) layout_.push_back({name, p.sizes().vec()});
}

Checkpointer::~Checkpointer() {
  if (!in_flight_.valid()) return;
  cancel_ = true;
  in_flight_.wait();
}

fs::path Checkpointer::save(const TrainProgress& progress) {
  const auto start = Clock::now();  // the loop is blocked from here: the write before, then the copy
  wait();
  const double waited = seconds_since(start);
  // Keys of this save's reports in the store (which is per attempt of the run: communicator.cpp).
  const std::string key = fmt::format("checkpoint/{}", saves_++);

  // This rank's copy: its ranges of the weights and moments, its RNG states.
  CheckpointShard shard;
  shard.step = progress.step;
  shard.rank = comm_.rank();
  shard.world_size = comm_.world_size();
  ParallelOptimizer& opt = step_.optimizer();
  int64_t n = 0;
  for (const auto& [lo, hi] : opt.checkpoint_ranges()) {
    shard.ranges.push_back({lo, hi});
    n += hi - lo;
  }
  const torch::Device device = step_.params().front().tensor.device();
  shard.weights = host_buffer(n, device);
  shard.exp_avg = host_buffer(n, device);
  shard.exp_avg_sq = host_buffer(n, device);
  opt.copy_state(shard.weights, shard.exp_avg, shard.exp_avg_sq);  // the fp32 masters, not bf16 parameters
  capture_rng(shard.cpu_rng, shard.cuda_rng);
  TrainProgress p = progress;
  p.adam_steps = opt.steps();

  last_ = dir_ / fmt::format("step-{:08d}", progress.step);
  cancel_ = false;
  in_flight_ = std::async(std::launch::async, [this, s = std::move(shard), p, key]() mutable {
    return write(std::move(s), p, key);
  });
  blocked_s_ = seconds_since(start);
  waited_s_ = waited;
  return async_ ? last_ : wait();
}

std::string Checkpointer::write(CheckpointShard shard, TrainProgress progress, std::string key) {
  const auto start = Clock::now();
  const fs::path folder = shard_folder(dir_, progress.step);
  nlohmann::json report;
  std::exception_ptr failure;
  try {
    fs::create_directories(folder);  // by whichever rank comes first
    report["files"] = write_checkpoint_shard(folder, shard, layout_);
    nlohmann::json ranges = nlohmann::json::array();
    for (const auto& r : shard.ranges) ranges.push_back({r.begin, r.end});
    report["ranges"] = ranges;
  } catch (const std::exception& e) {
    failure = std::current_exception();
    report = {{"error", e.what()}};
  }
  shard = CheckpointShard();  // the host copy goes as soon as it is on disk
  if (!comm_.is_root()) {
    comm_.post(key, report.dump());
    write_s_ = seconds_since(start);
    return "";
  }
  try {
    // Every rank's word first, failed or not: then no rank writes into the folder any more.
    std::vector<std::string> posts;
    try {
      posts = comm_.collect_posts(key, write_limit_, "checkpoint.write_timeout_s", [this] { return cancel_.load(); });
    } catch (...) {
      if (failure) std::rethrow_exception(failure);
      throw;
    }
    if (failure) std::rethrow_exception(failure);
    std::vector<std::vector<FlatRange>> ranges(static_cast<size_t>(comm_.world_size()));
    FileRecords files = report.at("files");
    for (const auto& r : report.at("ranges")) ranges[0].push_back({r.at(0), r.at(1)});
    for (int r = 1; r < comm_.world_size(); ++r) {
      const auto other = nlohmann::json::parse(posts[static_cast<size_t>(r)]);
      if (other.contains("error")) throw std::runtime_error(fmt::format("rank {}: {}", r, other.at("error").get<std::string>()));
      files.update(other.at("files"));
      for (const auto& x : other.at("ranges")) ranges[static_cast<size_t>(r)].push_back({x.at(0), x.at(1)});
    }
    const fs::path path = finish_checkpoint(dir_, folder, progress, config_yaml_, layout_, ranges, files, keep_);
    write_s_ = seconds_since(start);
    return path.string();
  } catch (...) {
    remove_tree(folder);  // a failed save leaves no temporary folder behind
    throw;
  }
}

fs::path Checkpointer::wait() {
  if (!in_flight_.valid()) return last_;
  std::future<std::string> job = std::move(in_flight_);
  if (!comm_.is_root()) job.get();  // its failure went to rank 0 in its report
  const std::string path =
      comm_.on_root("write the checkpoint", [&] { return job.get(); }, write_limit_, "checkpoint.write_timeout_s");
  if (note_)
    note_(async_ ? fmt::format("checkpoint {}: the loop was blocked {:.3f} s ({:.3f} s of it waiting for the write "
                               "before), the write took {:.3f} s in the background",
                               path, blocked_s_, waited_s_, write_s_)
                 : fmt::format("checkpoint {}: written in {:.3f} s", path, blocked_s_ + write_s_));
  return path;
}

}  // namespace rwkv::trainer
