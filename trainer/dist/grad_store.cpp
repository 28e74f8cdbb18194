#include "trainer/dist/grad_store.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>

namespace rwkv {
namespace {

// Runs after autograd's AccumulateGrad has stored a gradient into a leaf's .grad (the C++ side of
// torch's register_post_accumulate_grad_hook). The hook lives in the leaf's autograd metadata, so
// it survives the graph and fires in every backward.
class AfterAccumulate : public torch::autograd::PostAccumulateGradHook {
 public:
  explicit AfterAccumulate(std::function<void()> fn) : fn_(std::move(fn)) {}
  void operator()(const torch::autograd::Variable& /*tensor*/) override { fn_(); }

 private:
  std::function<void()> fn_;
};

// sum += g (fp32 += bf16, computed in fp32) a million elements at a time: ATen's CPU kernels cast
// a mixed-dtype operand into a temporary first, which for the head's or the embedding's gradient
// would be a second fp32 copy of it at the backward's peak (measured: `rwkv bench memory`).
void add_in_pieces(torch::Tensor& sum, const torch::Tensor& g) {
  constexpr int64_t kPiece = 1 << 20;
  auto s = sum.view({-1});
  const auto flat = g.reshape({-1});
  for (int64_t at = 0; at < flat.numel(); at += kPiece) {
    const int64_t n = std::min(kPiece, flat.numel() - at);
    s.narrow(0, at, n).add_(flat.narrow(0, at, n));
  }
}

}  // namespace

GradStore::GradStore(std::vector<torch::Tensor> params, Mode mode)
    : params_(std::move(params)), mode_(mode), fp32_(params_.size()) {
  if (mode_ == Mode::autograd) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    torch::autograd::impl::set_post_acc_grad_hooks(
        params_[i], std::make_unique<AfterAccumulate>([this, i] { arrived(i, params_[i].grad()); }));
  }
}

GradStore::~GradStore() {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (mode_ != Mode::autograd && params_[i].requires_grad())
      torch::autograd::impl::set_post_acc_grad_hooks(params_[i], nullptr);
    if (i < grad_hooks_.size() && grad_hooks_[i] != ~0u) params_[i].remove_hook(grad_hooks_[i]);
  }
}

void GradStore::listen(Listener listener) {
  listener_ = std::move(listener);
  if (mode_ != Mode::autograd || !grad_hooks_.empty()) return;
  // Autograd mode: the gradient is seen before AccumulateGrad adds it to .grad.
  grad_hooks_.assign(params_.size(), ~0u);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    grad_hooks_[i] = params_[i].register_hook([this, i](const torch::Tensor& g) {
      if (listener_ && g.defined()) listener_(i, g);
    });
  }
}

void GradStore::arrived(size_t i, const torch::Tensor& incoming) {
  if (!incoming.defined()) return;
  torch::NoGradGuard no_grad;
  if (listener_) listener_(i, incoming);
  if (mode_ == Mode::fp32) {
    if (fp32_[i].defined()) add_in_pieces(fp32_[i], incoming);
    else fp32_[i] = incoming.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
  }
  params_[i].mutable_grad() = torch::Tensor();
}

torch::Tensor GradStore::get(size_t i) const {
  if (mode_ == Mode::autograd) return params_[i].grad();
  return fp32_[i];
}

void GradStore::set(size_t i, const torch::Tensor& g) {
  TORCH_CHECK(mode_ != Mode::stream, "GradStore::set: a streaming store keeps no gradients");
  if (mode_ == Mode::autograd) {
    auto& grad = params_[i].mutable_grad();
    if (grad.defined()) grad.copy_(g);
    else grad = g.to(params_[i].dtype()).clone();
  } else if (fp32_[i].defined()) {
    fp32_[i].copy_(g);
  } else {
    fp32_[i] = g.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
  }
}

std::vector<torch::Tensor> GradStore::defined() const {
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i)
    if (auto g = get(i); g.defined()) out.push_back(g);
  return out;
}

void GradStore::drop() {
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].mutable_grad() = torch::Tensor();
    fp32_[i] = torch::Tensor();
  }
}

}  // namespace rwkv
