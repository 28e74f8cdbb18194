#include "trainer/dist/grad_sync.h"

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <stdexcept>

namespace rwkv {

GradientSync::GradientSync(std::vector<torch::Tensor> params, Communicator& comm, int64_t bucket_bytes,
                           bool overlap)
    : params_(std::move(params)), comm_(comm), bucket_of_(params_.size()), offset_(params_.size()),
      arrived_(params_.size(), 0) {
  TORCH_CHECK(bucket_bytes > 0, "gradient bucket size must be positive");
  const int64_t bucket_elems = std::max<int64_t>(1, bucket_bytes / 4);
  // Reverse parameter order: backward produces the last layers' gradients first.
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    const bool new_bucket = buckets_.empty() || buckets_.back().numel >= bucket_elems ||
                            params_[buckets_.back().members.front()].device() != p.device();
    if (new_bucket) buckets_.emplace_back();
    bucket_of_[k] = buckets_.size() - 1;
    offset_[k] = buckets_.back().numel;
    buckets_.back().members.push_back(k);
    buckets_.back().numel += p.numel();
  }
  for (auto& b : buckets_) {
    const auto& first = params_[b.members.front()];
    b.flat = torch::empty({b.numel}, torch::TensorOptions().dtype(torch::kFloat32).device(first.device()));
  }
  if (!overlap || !comm_.grouped()) return;
  hooks_.assign(params_.size(), ~0u);
  for (size_t i = 0; i < params_.size(); ++i) {
    // A parameter without requires_grad never receives a gradient: it is packed as zeros.
    if (!params_[i].requires_grad()) continue;
    hooks_[i] = params_[i].register_hook([this, i](const torch::Tensor& g) { on_gradient(i, g); });
  }
}

GradientSync::~GradientSync() {
  for (size_t i = 0; i < hooks_.size(); ++i)
    if (hooks_[i] != ~0u) params_[i].remove_hook(hooks_[i]);
}

torch::Tensor GradientSync::slot(size_t param) {
  return buckets_[bucket_of_[param]].flat.narrow(0, offset_[param], params_[param].numel());
}

void GradientSync::arm_for_backward() {
  if (hooks_.empty()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  std::fill(arrived_.begin(), arrived_.end(), 0);
  for (auto& b : buckets_) b.missing = b.members.size();
  next_start_ = 0;
  started_in_backward_ = 0;
  armed_ = true;
}

void GradientSync::on_gradient(size_t param, const torch::Tensor& incoming) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || !incoming.defined()) return;
  torch::NoGradGuard no_grad;
  auto s = slot(param);
  const auto g = incoming.reshape({-1});
  if (arrived_[param]) {
    // Autograd sums all uses of a leaf before accumulating it, so a second call means a second
    // graph reached the parameter in the same backward: add it unless the bucket is on the wire.
    if (bucket_of_[param] < next_start_)
      throw std::logic_error("gradient sync: a parameter's gradient arrived twice in one backward, after its "
                             "bucket's all-reduce started; set train.overlap_grad_reduce: false");
    s.add_(g);
    return;
  }
  // The gradient .grad will hold once autograd has accumulated `incoming` (the same fp32 sum).
  const auto& earlier = params_[param].grad();
  if (earlier.defined()) torch::add_out(s, earlier.reshape({-1}), g);
  else s.copy_(g);
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
  // Pack what the backward did not deliver (all of it without overlap) and start the rest.
  for (size_t k = next_start_; k < buckets_.size(); ++k) {
    auto& b = buckets_[k];
    for (size_t i : b.members) {
      if (arrived_[i]) continue;
      const auto& g = params_[i].grad();
      if (g.defined()) slot(i).copy_(g.reshape({-1}));
      else slot(i).zero_();
    }
    b.missing = 0;
  }
  start_ready_buckets();
  const double inv_world = 1.0 / comm_.world_size();
  for (auto& b : buckets_) {
    comm_.wait(b.work);
    b.work.reset();
    b.flat.mul_(inv_world);  // SUM then divide, in fp32 (Gloo's AVG is unreliable)
    for (size_t i : b.members) {
      auto& p = params_[i];
      auto avg = slot(i).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(avg);
      else p.mutable_grad() = avg.to(p.dtype()).clone();
    }
  }
}

}  // namespace rwkv
