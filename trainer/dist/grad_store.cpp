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
    : params_(std::move(params)), mode_(mode), fp32_(params_.size()), homes_(params_.size()) {
  if (mode_ != Mode::autograd) hook();
}

GradStore::~GradStore() {
  for (size_t i = 0; i < pre_hooks_.size(); ++i) {
    if (pre_hooks_[i] == ~0u) continue;
    params_[i].remove_hook(pre_hooks_[i]);
    torch::autograd::impl::set_post_acc_grad_hooks(params_[i], nullptr);
  }
}

void GradStore::hook() {
  if (!pre_hooks_.empty()) return;
  pre_hooks_.assign(params_.size(), ~0u);
  coming_.assign(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    pre_hooks_[i] = params_[i].register_hook([this, i](const torch::Tensor& g) {
      if (g.defined()) coming_[i] = 1;
    });
    torch::autograd::impl::set_post_acc_grad_hooks(params_[i], std::make_unique<AfterAccumulate>([this, i] {
      if (!coming_[i]) return;
      coming_[i] = 0;
      arrived(i, params_[i].grad());
    }));
  }
}

void GradStore::listen(Listener listener) {
  listener_ = std::move(listener);
  hook();
}

void GradStore::home(size_t i, torch::Tensor slot) {
  TORCH_CHECK(mode_ != Mode::stream, "GradStore::home: a streaming store keeps no gradients");
  TORCH_CHECK(slot.scalar_type() == torch::kFloat32 && slot.is_contiguous() && slot.numel() == params_[i].numel(),
              "GradStore::home: parameter ", i, " needs a contiguous fp32 slot of ", params_[i].numel(), " elements");
  homes_[i] = slot.view({-1});
  hook();
}

torch::Tensor& GradStore::sum(size_t i) { return mode_ == Mode::autograd ? params_[i].mutable_grad() : fp32_[i]; }

void GradStore::arrived(size_t i, const torch::Tensor& incoming) {
  if (!incoming.defined()) return;
  torch::NoGradGuard no_grad;
  if (mode_ == Mode::stream) {
    if (listener_) listener_(i, incoming);
    params_[i].mutable_grad() = torch::Tensor();
    return;
  }
  const auto& home = homes_[i];
  if (mode_ == Mode::fp32) {
    if (fp32_[i].defined()) {
      add_in_pieces(fp32_[i], incoming);
    } else if (home.defined()) {
      home.copy_(incoming.reshape({-1}));
      fp32_[i] = home.view(params_[i].sizes());
    } else {
      fp32_[i] = incoming.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
    }
    params_[i].mutable_grad() = torch::Tensor();
  } else if (home.defined() && incoming.data_ptr() != home.data_ptr()) {
    // The first gradient since drop(), which autograd stored on its own: into the home, where
    // autograd adds the later ones in place (.grad is defined, so AccumulateGrad accumulates).
    home.copy_(incoming.reshape({-1}));
    params_[i].mutable_grad() = home.view(params_[i].sizes());
  }
  if (listener_) listener_(i, get(i));
}

void GradStore::settle(size_t i) {
  torch::NoGradGuard no_grad;
  const auto& home = homes_[i];
  TORCH_CHECK(home.defined(), "GradStore::settle: parameter ", i, " has no home");
  auto& s = sum(i);
  if (s.defined() && s.data_ptr() == home.data_ptr()) return;
  if (s.defined()) home.copy_(s.reshape({-1}));
  else home.zero_();
  s = home.view(params_[i].sizes());
}

torch::Tensor GradStore::get(size_t i) const {
  if (mode_ == Mode::autograd) return params_[i].grad();
  return fp32_[i];
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
