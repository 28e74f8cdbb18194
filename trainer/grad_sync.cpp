#include "trainer/grad_sync.h"

namespace rwkv {

GradientSync::GradientSync(std::vector<torch::Tensor> params, Communicator& comm,
                           int64_t bucket_bytes)
    : params_(std::move(params)), comm_(comm) {
  TORCH_CHECK(bucket_bytes > 0, "gradient bucket size must be positive");
  const int64_t bucket_elems = std::max<int64_t>(1, bucket_bytes / 4);
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    const bool new_bucket = buckets_.empty() || buckets_.back().numel >= bucket_elems ||
                            params_[buckets_.back().members.front()].device() != p.device();
    if (new_bucket) buckets_.emplace_back();
    buckets_.back().members.push_back(i);
    buckets_.back().numel += p.numel();
  }
  for (auto& b : buckets_) {
    const auto& first = params_[b.members.front()];
    b.flat = torch::empty({b.numel}, torch::TensorOptions().dtype(torch::kFloat32).device(first.device()));
  }
}

void GradientSync::average() {
  if (comm_.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  const double inv_world = 1.0 / comm_.world_size();
  for (auto& b : buckets_) {
    int64_t off = 0;
    for (size_t i : b.members) {
      auto& p = params_[i];
      auto slot = b.flat.narrow(0, off, p.numel());
      if (p.grad().defined()) slot.copy_(p.grad().reshape({-1}));
      else slot.zero_();
      off += p.numel();
    }
    comm_.all_reduce_sum(b.flat);
    b.flat.mul_(inv_world);  // SUM then divide, in fp32 (Gloo's AVG is unreliable)
    off = 0;
    for (size_t i : b.members) {
      auto& p = params_[i];
      auto avg = b.flat.narrow(0, off, p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(avg);
      else p.mutable_grad() = avg.to(p.dtype()).clone();
      off += p.numel();
    }
  }
}

}  // namespace rwkv
