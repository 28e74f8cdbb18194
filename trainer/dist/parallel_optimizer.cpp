#include "trainer/dist/parallel_optimizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "trainer/dist/grad_sync.h"

namespace rwkv::trainer {
namespace {

// Stage 0: the whole Adam on every rank. Identical averaged gradients and identical elementwise
// updates keep the replicas bit-identical without communicating the parameters.
class ReplicatedAdam : public ParallelOptimizer {
 public:
  ReplicatedAdam(const NamedTensors& params, const AdamConfig& config, Communicator& comm, int64_t bucket_bytes,
                 bool overlap)
      : params_(params), adam_(params, config), sync_(tensors_of(params), comm, bucket_bytes, overlap) {
    int64_t total = 0;
    for (const auto& [name, p] : params_) total += p.numel();
    const int64_t world = comm.world_size(), cut = (total + world - 1) / world;
    const int64_t lo = std::min(total, comm.rank() * cut), hi = std::min(total, lo + cut);
    if (hi > lo) ranges_.push_back({lo, hi});
  }

  void before_last_backward() override { sync_.arm_for_backward(); }
  void reduce_gradients() override { sync_.average(); }
  torch::Tensor grad_norm() override { return global_grad_norm(params_); }
  void clip(double norm, double max_norm) override { clip_gradients(params_, norm, max_norm); }
  void step(double lr, const LrMult& mult) override { adam_.step(lr, mult); }
  int64_t steps() const override { return adam_.steps(); }
  const std::vector<std::pair<int64_t, int64_t>>& checkpoint_ranges() const override { return ranges_; }
  void copy_moments(torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq) const override {
    const NamedTensors state = adam_.state();
    for (const auto& [prefix, out] : {std::pair{"exp_avg.", &exp_avg}, std::pair{"exp_avg_sq.", &exp_avg_sq}}) {
      std::vector<torch::Tensor> moments;
      for (const auto& [name, p] : params_) moments.push_back(*find_tensor(state, prefix + name));
      copy_flat_ranges(moments, ranges_, *out);
    }
  }
  void load_state(const SliceReader& read, int64_t steps) override {
    NamedTensors state;
    for (const char* prefix : {"exp_avg.", "exp_avg_sq."})
      for (const auto& [name, p] : params_)
        state.push_back({prefix + name, read(prefix + name, p.sizes(), 0, p.numel()).view(p.sizes())});
    adam_.load_state(state, steps);
  }

 private:
  static std::vector<torch::Tensor> tensors_of(const NamedTensors& params) {
    std::vector<torch::Tensor> out;
    for (const auto& [name, p] : params) out.push_back(p);
    return out;
  }
  NamedTensors params_;
  Adam adam_;
  GradientSync sync_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;  // written into checkpoints
};

// Stages 1 and 2. Each bucket of gradients is packed into one buffer and all-reduced (stage 1:
// every rank receives the whole sum and keeps its part) or reduce-scattered (stage 2: each rank
// receives only its part, half the traffic). The flat view concatenates the parameters in order; it is cut into buckets of
// about bucket_bytes, and each bucket into world_size equal parts (the last padded): rank r owns
// part r of every bucket. Per-bucket parts keep each collective's buffer at one bucket
// (reduce-scatter and all-gather need equal parts per rank), and spread every parameter over
// several ranks instead of giving one rank the embedding and another the head.
class ShardedAdam : public ParallelOptimizer {
 public:
  ShardedAdam(const NamedTensors& params, const AdamConfig& config, Communicator& comm, int64_t zero_stage,
              int64_t bucket_bytes)
      : params_(params), config_(config), comm_(comm), stage_(zero_stage) {
    const int64_t world = comm.world_size(), rank = comm.rank();
    int64_t flat = 0;
    for (const auto& [name, p] : params_) {
      TORCH_CHECK(p.scalar_type() == torch::kFloat32 && p.is_contiguous(), "ZeRO shards contiguous fp32 parameters; ",
                  name, " is not");
      offsets_.push_back(flat);
      flat += p.numel();
    }
    total_ = flat;
    const int64_t bucket_elems = std::max<int64_t>(world, bucket_bytes / 4);
    int64_t shard = 0, max_part = 0;
    for (int64_t start = 0; start < total_; start += bucket_elems) {
      Bucket b{start, std::min(bucket_elems, total_ - start), 0, shard};
      b.part = (b.length + world - 1) / world;
      shard += b.part;
      max_part = std::max(max_part, b.part);
      // This rank's part as pieces of parameters.
      const int64_t lo = b.start + rank * b.part, hi = std::min(b.start + (rank + 1) * b.part, b.start + b.length);
      for_each_overlap(lo, hi, [&](size_t i, int64_t param_offset, int64_t rel, int64_t len) {
        pieces_.push_back({i, param_offset, b.shard_offset + rel, len});
      });
      if (hi > lo) ranges_.push_back({lo, hi});
      buckets_.push_back(b);
    }
    const auto opts = params_.front().tensor.options().requires_grad(false);
    exp_avg_ = torch::zeros({shard}, opts);
    exp_avg_sq_ = torch::zeros({shard}, opts);
    grad_ = torch::zeros({shard}, opts);
    gathered_ = torch::empty({world * max_part}, opts);
    part_ = torch::empty({max_part}, opts);
  }

  void reduce_gradients() override {
    torch::NoGradGuard no_grad;
    for (const auto& b : buckets_) {
      auto in = gathered_.narrow(0, 0, comm_.world_size() * b.part);
      in.zero_();  // the padding, and parameters without a gradient, contribute zeros
      for_each_overlap(b.start, b.start + b.length, [&](size_t i, int64_t param_offset, int64_t rel, int64_t len) {
        const auto& g = params_[i].tensor.grad();
        if (g.defined()) in.narrow(0, rel, len).copy_(g.reshape({-1}).narrow(0, param_offset, len));
      });
      auto out = grad_.narrow(0, b.shard_offset, b.part);
      if (stage_ == 2) {
        comm_.reduce_scatter_sum(out, in);
      } else {
        comm_.all_reduce_sum(in);
        out.copy_(in.narrow(0, comm_.rank() * b.part, b.part));
      }
    }
    grad_.mul_(1.0 / static_cast<double>(comm_.world_size()));  // SUM then divide, in fp32
    // The shard is all the update needs: the whole gradients can go now.
    for (const auto& [name, p] : params_) p.mutable_grad() = torch::Tensor();
  }

  torch::Tensor grad_norm() override {
    auto sq = grad_.to(torch::kFloat64).square().sum().reshape({1});
    comm_.all_reduce_sum(sq);
    return sq.sqrt().reshape({});
  }

  void clip(double norm, double max_norm) override {
    const double coef = clip_coefficient(norm, max_norm);
    if (coef != 1.0) grad_.mul_(coef);
  }

  void step(double lr, const LrMult& mult) override {
    torch::NoGradGuard no_grad;
    ++steps_;
    for (const auto& pc : pieces_) {
      const auto& [name, p] = params_[pc.param];
      auto param = param_flat(pc.param, false).narrow(0, pc.param_offset, pc.length);
      auto m = exp_avg_.narrow(0, pc.shard_offset, pc.length), v = exp_avg_sq_.narrow(0, pc.shard_offset, pc.length);
      adam_update(param, grad_.narrow(0, pc.shard_offset, pc.length), m, v, lr * lr_multiplier(name, mult),
                  p.dim() == 2, steps_, config_);
    }
    // Every rank receives the updated parts of the others.
    gather(
        [&](const Bucket& b, torch::Tensor& part) {
          part.zero_();
          for (const auto& pc : pieces_)
            if (pc.shard_offset >= b.shard_offset && pc.shard_offset < b.shard_offset + b.part)
              part.narrow(0, pc.shard_offset - b.shard_offset, pc.length)
                  .copy_(param_flat(pc.param, false).narrow(0, pc.param_offset, pc.length));
        },
        [&](size_t i, int64_t param_offset, const torch::Tensor& values) {
          param_flat(i, false).narrow(0, param_offset, values.numel()).copy_(values);
        });
  }

  int64_t steps() const override { return steps_; }

  const std::vector<std::pair<int64_t, int64_t>>& checkpoint_ranges() const override { return ranges_; }

  // A bucket's part of the shard starts with this rank's range of it (the padding follows).
  void copy_moments(torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq) const override {
    torch::NoGradGuard no_grad;
    int64_t at = 0;
    size_t r = 0;
    for (const auto& b : buckets_) {
      const int64_t lo = b.start + comm_.rank() * b.part, n = std::min(b.part, b.start + b.length - lo);
      if (n <= 0) continue;
      TORCH_CHECK(ranges_[r].first == lo && ranges_[r].second == lo + n, "ZeRO checkpoint ranges out of step");
      ++r;
      exp_avg.narrow(0, at, n).copy_(exp_avg_.narrow(0, b.shard_offset, n));
      exp_avg_sq.narrow(0, at, n).copy_(exp_avg_sq_.narrow(0, b.shard_offset, n));
      at += n;
    }
  }

  void load_state(const SliceReader& read, int64_t steps) override {
    torch::NoGradGuard no_grad;
    for (const auto& [prefix, shard] : {std::pair{"exp_avg.", exp_avg_}, std::pair{"exp_avg_sq.", exp_avg_sq_}}) {
      for (const auto& pc : pieces_) {
        const auto& [name, p] = params_[pc.param];
        shard.narrow(0, pc.shard_offset, pc.length).copy_(read(prefix + name, p.sizes(), pc.param_offset, pc.length));
      }
    }
    steps_ = steps;
  }

 private:
  struct Bucket {
    int64_t start, length;  // in the flat view
    int64_t part;           // elements per rank (length rounded up to a multiple of the world size)
    int64_t shard_offset;   // where this bucket's part sits in each rank's shard
  };
  struct Piece {            // a run of one parameter inside this rank's shard
    size_t param;
    int64_t param_offset, shard_offset, length;
  };

  // Calls fn(param index, offset in the parameter, offset from `lo`, length) for every parameter
  // overlapping [lo, hi) of the flat view.
  template <class Fn>
  void for_each_overlap(int64_t lo, int64_t hi, Fn&& fn) const {
    for (size_t i = 0; i < params_.size(); ++i) {
      const int64_t a = std::max(lo, offsets_[i]), b = std::min(hi, offsets_[i] + params_[i].tensor.numel());
      if (a < b) fn(i, a - offsets_[i], a - lo, b - a);
    }
  }

  torch::Tensor param_flat(size_t i, bool grad) const {
    const auto& p = params_[i].tensor;
    return grad ? p.grad().reshape({-1}) : p.view({-1});
  }

  // For each bucket: fill(bucket, part) writes this rank's part, all ranks' parts are gathered,
  // and take(param index, offset in it, values) receives each parameter run of the bucket.
  template <class Fill, class Take>
  void gather(Fill&& fill, Take&& take) {
    torch::NoGradGuard no_grad;
    for (const auto& b : buckets_) {
      auto part = part_.narrow(0, 0, b.part);
      auto all = gathered_.narrow(0, 0, comm_.world_size() * b.part);
      fill(b, part);
      comm_.all_gather(all, part);
      for_each_overlap(b.start, b.start + b.length, [&](size_t i, int64_t param_offset, int64_t rel, int64_t len) {
        take(i, param_offset, all.narrow(0, rel, len));
      });
    }
  }

  NamedTensors params_;
  std::vector<int64_t> offsets_;  // of each parameter in the flat view
  int64_t total_ = 0;
  AdamConfig config_;
  Communicator& comm_;
  int64_t stage_;
  std::vector<Bucket> buckets_;
  std::vector<Piece> pieces_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;  // this rank's run of each bucket: written into checkpoints
  torch::Tensor exp_avg_, exp_avg_sq_, grad_;  // this rank's shard (fp32)
  torch::Tensor gathered_, part_;              // collective buffers of one bucket
  int64_t steps_ = 0;
};

}  // namespace

void copy_flat_ranges(const std::vector<torch::Tensor>& tensors, const std::vector<std::pair<int64_t, int64_t>>& ranges,
                      torch::Tensor& out) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> start{0};  // of each tensor in the flat view, then the total
  for (const auto& t : tensors) start.push_back(start.back() + t.numel());
  int64_t at = 0;
  for (const auto& [lo, hi] : ranges) {
    TORCH_CHECK(0 <= lo && lo < hi && hi <= start.back(), "copy_flat_ranges: range [", lo, ", ", hi,
                ") is not inside the flat view of ", start.back(), " elements");
    for (auto j = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), lo) - start.begin() - 1);
         j < tensors.size() && start[j] < hi; ++j) {
      const int64_t a = std::max(lo, start[j]), b = std::min(hi, start[j + 1]);
      if (a < b) out.narrow(0, at + a - lo, b - a).copy_(tensors[j].detach().reshape({-1}).narrow(0, a - start[j], b - a));
    }
    at += hi - lo;
  }
}

std::unique_ptr<ParallelOptimizer> make_parallel_optimizer(const NamedTensors& params, const AdamConfig& config,
                                                           Communicator& comm, int64_t zero_stage, int64_t bucket_bytes,
                                                           bool overlap_grad_reduce) {
  if (zero_stage == 0) return std::make_unique<ReplicatedAdam>(params, config, comm, bucket_bytes, overlap_grad_reduce);
  if (zero_stage == 1 || zero_stage == 2)
    return std::make_unique<ShardedAdam>(params, config, comm, zero_stage, bucket_bytes);
  throw std::invalid_argument(fmt::format("zero_stage must be 0, 1 or 2, got {}", zero_stage));
}

}  // namespace rwkv::trainer
