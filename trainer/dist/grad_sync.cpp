#include "trainer/dist/grad_sync.h"

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <stdexcept>

namespace rwkv {

GradientSync::GradientSync(GradStore& grads, Communicator& comm, int64_t bucket_bytes, bool overlap)
    : grads_(grads), comm_(comm), bucket_of_(grads.size()), offset_(grads.size()), arrived_(grads.size(), 0) {
  TORCH_CHECK(bucket_bytes > 0, "gradient bucket size must be positive");
  const int64_t bucket_elems = std::max<int64_t>(1, bucket_bytes / 4);
  // Reverse parameter order: backward produces the last layers' gradients first.
  for (size_t k = grads_.size(); k-- > 0;) {
    const auto& p = grads_.param(k);
    const bool new_bucket = buckets_.empty() || buckets_.back().numel >= bucket_elems ||
                            grads_.param(buckets_.back().members.front()).device() != p.device();
    if (new_bucket) buckets_.emplace_back();
    bucket_of_[k] = buckets_.size() - 1;
    offset_[k] = buckets_.back().numel;
    buckets_.back().members.push_back(k);
    buckets_.back().numel += p.numel();
  }
  if (!comm_.grouped()) return;  // nothing to reduce: no buffers
  // The buckets are the gradients' home: the sums are accumulated and all-reduced in place.
  for (auto& b : buckets_) {
    const auto& first = grads_.param(b.members.front());
    b.flat = torch::empty({b.numel}, torch::TensorOptions().dtype(torch::kFloat32).device(first.device()));
  }
  for (size_t i = 0; i < grads_.size(); ++i) grads_.home(i, slot(i));
  if (!overlap) return;
  overlap_ = true;
  // A parameter without requires_grad never receives a gradient: average() zeroes its slot.
  grads_.listen([this](size_t i, const torch::Tensor&) { on_gradient(i); });
}

GradientSync::~GradientSync() = default;

torch::Tensor GradientSync::slot(size_t param) {
  return buckets_[bucket_of_[param]].flat.narrow(0, offset_[param], grads_.param(param).numel());
}

void GradientSync::arm_for_backward() {
  if (!overlap_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  std::fill(arrived_.begin(), arrived_.end(), 0);
  for (auto& b : buckets_) b.missing = b.members.size();
  next_start_ = 0;
  started_in_backward_ = 0;
  armed_ = true;
}

void GradientSync::on_gradient(size_t param) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;
  if (arrived_[param]) {
    // Autograd sums all uses of a leaf before accumulating it, so a second call means a second
    // graph reached the parameter in the same backward and added to its slot again.
    if (bucket_of_[param] < next_start_)
      throw std::logic_error("gradient sync: a parameter's gradient arrived twice in one backward, after its "
                             "bucket's all-reduce started; set train.overlap_grad_reduce: false");
    return;
  }
  // The store has added this backward's gradient to the sum in the slot: it is complete.
  arrived_[param] = 1;
  --buckets_[bucket_of_[param]].missing;
  start_ready_buckets();
  started_in_backward_ = next_start_;
}

void GradientSync::start_ready_buckets() {
  while (next_start_ < buckets_.size() && buckets_[next_start_].missing == 0) {
    auto& b = buckets_[next_start_++];
    b.work = comm_.start_all_reduce_sum(b.flat);
  }
}

void GradientSync::average() {
  if (!comm_.grouped()) return;
  torch::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) {
    // Nothing packed yet: every member counts as missing.
    std::fill(arrived_.begin(), arrived_.end(), 0);
    for (auto& b : buckets_) b.missing = b.members.size();
    next_start_ = 0;
  }
  armed_ = false;
  // The sums are in their slots already, but those of parameters without a gradient (zeros) or
  // set by hand; then every bucket not started during backward starts.
  for (size_t k = next_start_; k < buckets_.size(); ++k) {
    auto& b = buckets_[k];
    for (size_t i : b.members)
      if (!arrived_[i]) grads_.settle(i);
    b.missing = 0;
  }
  start_ready_buckets();
  const double inv_world = 1.0 / comm_.world_size();
  for (auto& b : buckets_) {
    comm_.wait(b.work);
    b.work.reset();
    b.flat.mul_(inv_world);  // SUM then divide, in fp32 (Gloo's AVG is unreliable)
  }
}

}  // namespace rwkv
