#include "trainer/dist/parallel_optimizer.h"

#include <fmt/format.h>

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "trainer/dist/grad_store.h"
#include "trainer/dist/grad_sync.h"

namespace rwkv::trainer {
namespace {

std::vector<torch::Tensor> tensors_of(const NamedTensors& named) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : named) out.push_back(t);
  return out;
}

// The module's parameters converted in place to `dtype` (the same tensors, so the module, its
// forward and every holder of them see the new data).
void convert_parameters(const NamedTensors& params, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params)
    if (p.scalar_type() != dtype) p.set_data(p.detach().to(dtype));
}

GradStore::Mode store_mode(int64_t zero_stage, torch::ScalarType compute_dtype) {
  if (zero_stage == 2) return GradStore::Mode::stream;
  return compute_dtype == torch::kFloat32 ? GradStore::Mode::autograd : GradStore::Mode::fp32;
}

void check_parameters(const NamedTensors& params, torch::ScalarType compute_dtype) {
  for (const auto& [name, p] : params)
    TORCH_CHECK((p.scalar_type() == torch::kFloat32 || p.scalar_type() == compute_dtype) && p.is_contiguous(),
                "the optimizer takes contiguous fp32 or ", c10::toString(compute_dtype), " parameters; ", name, " is ",
                p.scalar_type());
}

// Collectives started in order and completed oldest first, at most `limit` outstanding: the
// buckets' communication overlaps the packing of the next ones (and each other) while only a few
// bucket buffers exist at a time. `done` runs once its collective has completed.
class InFlight {
 public:
  InFlight(Communicator& comm, size_t limit) : comm_(comm), limit_(limit) {}
  void add(c10::intrusive_ptr<c10d::Work> work, std::function<void()> done) {
    queue_.push_back({std::move(work), std::move(done)});
    while (queue_.size() > limit_) finish_oldest();
  }
  void finish_all() {
    while (!queue_.empty()) finish_oldest();
  }
  bool empty() const { return queue_.empty(); }

 private:
  void finish_oldest() {
    auto [work, done] = std::move(queue_.front());
    queue_.pop_front();
    comm_.wait(work);
    done();
  }
  Communicator& comm_;
  size_t limit_;
  std::deque<std::pair<c10::intrusive_ptr<c10d::Work>, std::function<void()>>> queue_;
};

// Collectives (and their bucket buffers) outstanding at once in the ZeRO stages.
constexpr size_t kInFlight = 4;

// Stage 0: the whole masters and Adam on every rank. Identical averaged gradients and identical
// elementwise updates keep the replicas bit-identical without communicating the parameters.
class ReplicatedAdam : public ParallelOptimizer {
 public:
  ReplicatedAdam(const NamedTensors& params, const AdamConfig& config, Communicator& comm,
                 const ParallelOptions& options)
      : params_(params),
        masters_(masters_of(params, options.compute_dtype)),
        adam_(masters_, config),
        store_(tensors_of(params), store_mode(0, options.compute_dtype)),
        sync_(store_, comm, options.bucket_bytes, options.overlap_grad_reduce) {
    int64_t total = 0;
    for (const auto& [name, p] : params_) total += p.numel();
    const int64_t world = comm.world_size(), cut = (total + world - 1) / world;
    const int64_t lo = std::min(total, comm.rank() * cut), hi = std::min(total, lo + cut);
    if (hi > lo) ranges_.push_back({lo, hi});
  }

  void before_last_backward() override { sync_.arm_for_backward(); }
  void reduce_gradients() override { sync_.average(); }
  void drop_gradients() override {
    store_.drop();
    grad_scale_ = 1.0;
  }
  torch::Tensor grad_norm() override {
    return global_grad_norm(store_.defined(), params_.front().tensor.device());
  }
  void clip(double norm, double max_norm) override { grad_scale_ = clip_coefficient(norm, max_norm); }
  void step(double lr, const LrMult& mult) override {
    std::vector<torch::Tensor> grads;
    for (size_t i = 0; i < store_.size(); ++i) grads.push_back(store_.get(i));
    adam_.step(lr, mult, grads, std::exchange(grad_scale_, 1.0));
    if (separate_masters()) {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params_.size(); ++i) params_[i].tensor.copy_(masters_[i].tensor);
    }
  }
  int64_t steps() const override { return adam_.steps(); }
  const std::vector<std::pair<int64_t, int64_t>>& checkpoint_ranges() const override { return ranges_; }
  void copy_state(torch::Tensor& weights, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq) const override {
    copy_flat_ranges(tensors_of(masters_), ranges_, weights);
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
  void load_masters(const SliceReader& read) override {
    if (!separate_masters()) return;
    torch::NoGradGuard no_grad;
    for (auto& [name, m] : masters_) m.copy_(read(name, m.sizes(), 0, m.numel()).view(m.sizes()));
  }

 private:
  // The fp32 parameters themselves, or fp32 copies of them taken before they are converted.
  static NamedTensors masters_of(const NamedTensors& params, torch::ScalarType dtype) {
    check_parameters(params, dtype);
    if (dtype == torch::kFloat32) return params;
    NamedTensors masters;
    for (const auto& [name, p] : params)
      masters.push_back({name, p.detach().to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true)});
    convert_parameters(params, dtype);
    return masters;
  }
  bool separate_masters() const {
    return !params_.empty() && !params_.front().tensor.is_same(masters_.front().tensor);
  }

  NamedTensors params_, masters_;
  double grad_scale_ = 1.0;  // from clip(), applied by the next step's Adam pass
  Adam adam_;
  GradStore store_;
  GradientSync sync_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;  // written into checkpoints
};

// Stages 1 and 2. The flat view concatenates the parameters in order; it is cut into buckets of
// about bucket_bytes, and each bucket into world_size equal parts (the last padded): rank r owns
// part r of every bucket. Per-bucket parts keep each collective's buffer at one bucket
// (reduce-scatter and all-gather need equal parts per rank), and spread every parameter over
// several ranks instead of giving one rank the embedding and another the head.
// Stage 1 packs each bucket of the accumulated gradients after backward and all-reduces it (every
// rank receives the whole sum and keeps its part). Stage 2 streams: the store hands over each
// gradient as it arrives, it is copied into the staging buffers of the buckets it overlaps, and a
// bucket whose gradients are all there is reduce-scattered at once (in bucket order, backward's
// order: last bucket first, the same on every rank), its part added into the fp32 shard `grad_`.
class ShardedAdam : public ParallelOptimizer {
 public:
  ShardedAdam(const NamedTensors& params, const AdamConfig& config, Communicator& comm, const ParallelOptions& options)
      : params_(params), config_(config), comm_(comm), stage_(options.zero_stage) {
    check_parameters(params, options.compute_dtype);
    const int64_t world = comm.world_size(), rank = comm.rank();
    int64_t flat = 0;
    for (const auto& [name, p] : params_) {
      offsets_.push_back(flat);
      flat += p.numel();
    }
    total_ = flat;
    const int64_t bucket_elems = std::max<int64_t>(world, options.bucket_bytes / 4);
    int64_t shard = 0;
    overlaps_.resize(params_.size());
    for (int64_t start = 0; start < total_; start += bucket_elems) {
      Bucket b{start, std::min(bucket_elems, total_ - start), 0, shard};
      b.part = (b.length + world - 1) / world;
      shard += b.part;
      // This rank's part as pieces of parameters.
      const int64_t lo = b.start + rank * b.part, hi = std::min(b.start + (rank + 1) * b.part, b.start + b.length);
      for_each_overlap(lo, hi, [&](size_t i, int64_t param_offset, int64_t rel, int64_t len) {
        pieces_.push_back({i, param_offset, b.shard_offset + rel, len});
      });
      if (hi > lo) ranges_.push_back({lo, hi});
      const size_t k = buckets_.size();
      for_each_overlap(b.start, b.start + b.length, [&](size_t i, int64_t param_offset, int64_t rel, int64_t len) {
        overlaps_[i].push_back({k, param_offset, rel, len});
        ++b.members;
      });
      buckets_.push_back(b);
    }
    const auto fp32 = params_.front().tensor.options().dtype(torch::kFloat32).requires_grad(false);
    exp_avg_ = torch::zeros({shard}, fp32);
    exp_avg_sq_ = torch::zeros({shard}, fp32);
    grad_ = torch::zeros({shard}, fp32);
    if (options.compute_dtype != torch::kFloat32) {
      // This rank's fp32 masters, taken before the parameters are converted.
      master_ = torch::zeros({shard}, fp32);
      for (const auto& pc : pieces_)
        master_.narrow(0, pc.shard_offset, pc.length).copy_(param_flat(pc.param).narrow(0, pc.param_offset, pc.length));
      convert_parameters(params_, options.compute_dtype);
    }
    compute_dtype_ = options.compute_dtype;
    store_ = std::make_unique<GradStore>(tensors_of(params_), store_mode(stage_, options.compute_dtype));
    if (stage_ == 2) {
      staged_.resize(buckets_.size());
      arrived_.assign(params_.size(), 0);
      next_start_ = static_cast<int64_t>(buckets_.size()) - 1;
      store_->listen([this](size_t i, const torch::Tensor& g) { on_gradient(i, g); });
    }
  }

  void after_backward() override {
    if (stage_ == 2) flush();
  }

  void reduce_gradients() override {
    torch::NoGradGuard no_grad;
    if (stage_ == 2) {
      if (pending_) flush();  // a backward whose after_backward() was not called
    } else {
      // Every bucket packed and started in turn, a few in flight, waited for oldest first.
      InFlight flight(comm_, kInFlight);
      for (const auto& b : buckets_) {
        // Zeros: the padding, and parameters without a gradient, contribute nothing.
        auto in = torch::zeros({comm_.world_size() * b.part}, grad_.options());
        for_each_overlap(b.start, b.start + b.length, [&](size_t i, int64_t param_offset, int64_t rel, int64_t len) {
          const auto g = store_->get(i);
          if (g.defined()) in.narrow(0, rel, len).copy_(g.reshape({-1}).narrow(0, param_offset, len));
        });
        flight.add(comm_.start_all_reduce_sum(in), [this, in, &b] {
          grad_.narrow(0, b.shard_offset, b.part).copy_(in.narrow(0, comm_.rank() * b.part, b.part));
        });
      }
      flight.finish_all();
      // The shard is all the update needs: the whole gradients can go now.
      store_->drop();
    }
    grad_.mul_(1.0 / static_cast<double>(comm_.world_size()));  // SUM then divide, in fp32
  }

  void drop_gradients() override {
    store_->drop();
    grad_.zero_();
    grad_scale_ = 1.0;
  }

  torch::Tensor grad_norm() override {
    // The shard's norm without an fp64 copy of it (ATen's CPU reductions of fp32 accumulate in
    // double, trainer/optim/optimizer.cpp global_grad_norm), squared in double, summed over ranks.
    auto sq = grad_.norm().to(torch::kFloat64).square().reshape({1});
    comm_.all_reduce_sum(sq);
    return sq.sqrt().reshape({});
  }

  void clip(double norm, double max_norm) override { grad_scale_ = clip_coefficient(norm, max_norm); }

  void step(double lr, const LrMult& mult) override {
    torch::NoGradGuard no_grad;
    ++steps_;
    std::vector<AdamItem> items;
    for (const auto& pc : pieces_) {
      const auto& [name, p] = params_[pc.param];
      items.push_back({master_piece(pc), grad_.narrow(0, pc.shard_offset, pc.length),
                       exp_avg_.narrow(0, pc.shard_offset, pc.length), exp_avg_sq_.narrow(0, pc.shard_offset, pc.length),
                       lr * lr_multiplier(name, mult), p.dim() == 2});
    }
    adam_update_all(items, steps_, config_, std::exchange(grad_scale_, 1.0));
    // Every rank receives the updated parts of the others, in the compute dtype, a few buckets in
    // flight, each gathered in place in one bucket-sized buffer.
    InFlight flight(comm_, kInFlight);
    const auto compute = grad_.options().dtype(compute_dtype_);
    for (const auto& b : buckets_) {
      auto all = torch::empty({comm_.world_size() * b.part}, compute);
      auto own = all.narrow(0, comm_.rank() * b.part, b.part);
      own.zero_();  // the padding
      for (const auto& pc : pieces_)
        if (pc.shard_offset >= b.shard_offset && pc.shard_offset < b.shard_offset + b.part)
          own.narrow(0, pc.shard_offset - b.shard_offset, pc.length).copy_(master_piece(pc));
      flight.add(comm_.start_all_gather_in_place(all), [this, all, &b] {
        for_each_overlap(b.start, b.start + b.length, [&](size_t i, int64_t param_offset, int64_t rel, int64_t len) {
          param_flat(i).narrow(0, param_offset, len).copy_(all.narrow(0, rel, len));
        });
      });
    }
    flight.finish_all();
  }

  int64_t steps() const override { return steps_; }

  const std::vector<std::pair<int64_t, int64_t>>& checkpoint_ranges() const override { return ranges_; }

  // A bucket's part of the shard starts with this rank's range of it (the padding follows).
  void copy_state(torch::Tensor& weights, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq) const override {
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
      if (master_.defined()) weights.narrow(0, at, n).copy_(master_.narrow(0, b.shard_offset, n));
      at += n;
    }
    if (!master_.defined()) copy_flat_ranges(tensors_of(params_), ranges_, weights);  // fp32: the parameters
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

  void load_masters(const SliceReader& read) override {
    if (!master_.defined()) return;
    torch::NoGradGuard no_grad;
    for (const auto& pc : pieces_) {
      const auto& [name, p] = params_[pc.param];
      master_.narrow(0, pc.shard_offset, pc.length).copy_(read(name, p.sizes(), pc.param_offset, pc.length));
    }
  }

 private:
  struct Bucket {
    int64_t start, length;  // in the flat view
    int64_t part;           // elements per rank (length rounded up to a multiple of the world size)
    int64_t shard_offset;   // where this bucket's part sits in each rank's shard
    size_t members = 0;     // parameter runs overlapping it
  };
  struct Piece {            // a run of one parameter inside this rank's shard
    size_t param;
    int64_t param_offset, shard_offset, length;
  };
  struct Overlap {          // a run of one parameter inside a bucket
    size_t bucket;
    int64_t param_offset, rel, length;
  };
  struct Staged {           // stage 2: a bucket between its first gradient and the end of its reduce-scatter
    torch::Tensor in, out;  // world_size·part fp32 gradients in, this rank's part of the sum out
    size_t missing = 0;     // runs not yet arrived in this backward
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

  torch::Tensor param_flat(size_t i) const { return params_[i].tensor.view({-1}); }

  // The fp32 master of a piece: the shard's copy, or (fp32 training) the parameter itself.
  torch::Tensor master_piece(const Piece& pc) const {
    return master_.defined() ? master_.narrow(0, pc.shard_offset, pc.length)
                             : param_flat(pc.param).narrow(0, pc.param_offset, pc.length);
  }

  // Stage 2, from the store's hook: parameter i's gradient of this backward into its buckets.
  void on_gradient(size_t i, const torch::Tensor& incoming) {
    std::lock_guard<std::mutex> lock(mutex_);
    torch::NoGradGuard no_grad;
    pending_ = true;
    const auto g = incoming.reshape({-1});
    const bool again = arrived_[i];
    arrived_[i] = 1;
    // Last bucket first, each started as soon as it is complete: a parameter spanning many
    // buckets (the embedding, the head) is staged a few buckets at a time, not whole.
    for (auto it = overlaps_[i].rbegin(); it != overlaps_[i].rend(); ++it) {
      const Overlap& o = *it;
      Staged& s = staged(o.bucket);
      if (again) {
        // Autograd sums all uses of a leaf before accumulating it: a second arrival means a second
        // graph reached it in the same backward.
        if (static_cast<int64_t>(o.bucket) > next_start_)
          throw std::logic_error("ZeRO-2: a parameter's gradient arrived twice in one backward after its bucket's "
                                 "reduce-scatter started (call after_backward() after each backward)");
        s.in.narrow(0, o.rel, o.length).add_(g.narrow(0, o.param_offset, o.length));
        continue;
      }
      s.in.narrow(0, o.rel, o.length).copy_(g.narrow(0, o.param_offset, o.length));
      --s.missing;
      start_ready();
    }
  }

  Staged& staged(size_t k) {
    Staged& s = staged_[k];
    if (!s.in.defined()) {
      // Zeros: the padding, and runs that never arrive in this backward, contribute nothing.
      s.in = torch::zeros({comm_.world_size() * buckets_[k].part}, grad_.options());
      s.missing = buckets_[k].members;
    }
    return s;
  }

  // Starts the complete buckets in order (the same collectives in the same sequence on every rank
  // whatever order the hooks fire in), keeping at most kInFlight reduce-scatters and their buffers.
  void start_ready() {
    while (next_start_ >= 0 && staged_[next_start_].in.defined() && staged_[next_start_].missing == 0) {
      Staged& s = staged_[next_start_];
      s.out = torch::empty({buckets_[next_start_].part}, grad_.options());
      const auto k = static_cast<size_t>(next_start_--);
      flight_.add(comm_.start_reduce_scatter_sum(s.out, s.in), [this, k] {
        Staged& done = staged_[k];
        grad_.narrow(0, buckets_[k].shard_offset, buckets_[k].part).add_(done.out);
        done = Staged{};
      });
    }
  }

  // The end of a backward: buckets with runs that did not arrive go as they are, then every
  // reduce-scatter completes.
  void flush() {
    std::lock_guard<std::mutex> lock(mutex_);
    torch::NoGradGuard no_grad;
    for (int64_t k = next_start_; k >= 0; --k) staged(static_cast<size_t>(k)).missing = 0;
    start_ready();
    flight_.finish_all();
    std::fill(arrived_.begin(), arrived_.end(), 0);
    next_start_ = static_cast<int64_t>(buckets_.size()) - 1;
    pending_ = false;
  }

  NamedTensors params_;
  std::vector<int64_t> offsets_;  // of each parameter in the flat view
  int64_t total_ = 0;
  AdamConfig config_;
  Communicator& comm_;
  int64_t stage_;
  std::vector<Bucket> buckets_;
  std::vector<Piece> pieces_;
  std::vector<std::vector<Overlap>> overlaps_;       // per parameter: its runs in the buckets
  std::vector<std::pair<int64_t, int64_t>> ranges_;  // this rank's run of each bucket: written into checkpoints
  torch::Tensor exp_avg_, exp_avg_sq_, grad_;  // this rank's shard (fp32)
  torch::Tensor master_;                       // this rank's shard of the fp32 masters (bf16 training)
  torch::ScalarType compute_dtype_;           // of the parameters (and of the all-gather)
  std::unique_ptr<GradStore> store_;
  // Stage 2's streaming state (guarded by mutex_: hooks may run on autograd's device thread).
  std::vector<Staged> staged_;
  InFlight flight_{comm_, kInFlight};
  std::vector<char> arrived_;
  int64_t next_start_ = -1;  // the next bucket to start (buckets start last to first)
  bool pending_ = false;     // gradients arrived since the last flush
  std::mutex mutex_;
  int64_t steps_ = 0;
  double grad_scale_ = 1.0;  // from clip(), applied by the next step's Adam pass
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
                                                           Communicator& comm, const ParallelOptions& options) {
  if (options.compute_dtype != torch::kFloat32 && options.compute_dtype != torch::kBFloat16)
    throw std::invalid_argument(fmt::format("compute dtype must be fp32 or bf16, got {}",
                                            c10::toString(options.compute_dtype)));
  if (options.zero_stage == 0) return std::make_unique<ReplicatedAdam>(params, config, comm, options);
  if (options.zero_stage == 1 || options.zero_stage == 2)
    return std::make_unique<ShardedAdam>(params, config, comm, options);
  throw std::invalid_argument(fmt::format("zero_stage must be 0, 1 or 2, got {}", options.zero_stage));
}

}  // namespace rwkv::trainer
