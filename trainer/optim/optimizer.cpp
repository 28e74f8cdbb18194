#include "trainer/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <stdexcept>

#include "kernels/adam_cpu.h"

namespace rwkv::trainer {

Adam::Adam(NamedTensors params, const AdamConfig& config) : config_(config) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    TORCH_CHECK(p.scalar_type() == torch::kFloat32, "Adam keeps fp32 master weights; ", name, " is ",
                p.scalar_type());
    slots_.push_back({name, p, torch::zeros_like(p), torch::zeros_like(p), p.dim() == 2});
  }
}

namespace {

bool fusable(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous();
}

}  // namespace

void adam_update(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq,
                 double plr, bool decay, int64_t t, const AdamConfig& config, double grad_scale) {
  torch::NoGradGuard no_grad;
  const double bc1 = 1.0 - std::pow(config.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(config.beta2, static_cast<double>(t));
  const double keep = decay && config.weight_decay > 0 ? 1.0 - plr * config.weight_decay : 1.0;
  if (fusable(param) && fusable(grad) && fusable(exp_avg) && fusable(exp_avg_sq)) {
    // One pass over memory instead of ATen's seven (kernels/adam_cpu.h).
    const kernels::AdamScalars s{.beta1 = static_cast<float>(config.beta1),
                                 .beta2 = static_cast<float>(config.beta2),
                                 .eps = static_cast<float>(config.eps),
                                 .step_size = static_cast<float>(plr / bc1),
                                 .inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2)),
                                 .keep = static_cast<float>(keep),
                                 .grad_scale = static_cast<float>(grad_scale)};
    kernels::adam_update_cpu(param.data_ptr<float>(), grad.data_ptr<float>(), exp_avg.data_ptr<float>(),
                             exp_avg_sq.data_ptr<float>(), param.numel(), s);
    return;
  }
  // The fallbacks scale a copy: the caller's gradient is only read, as by the fused pass.
  const torch::Tensor g = grad_scale == 1.0 ? grad : grad * grad_scale;
  if (param.is_cuda() && param.scalar_type() == torch::kFloat32) {
    AdamGroup one{{param}, {g}, {exp_avg}, {exp_avg_sq}};
    adam_update_group(one, plr, decay, t, config);
    return;
  }
  if (keep != 1.0) param.mul_(keep);
  exp_avg.lerp_(g, 1.0 - config.beta1);
  exp_avg_sq.mul_(config.beta2).addcmul_(g, g, 1.0 - config.beta2);
  const auto denom = (exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(config.eps);
  param.addcdiv_(exp_avg, denom, -plr / bc1);
}

void adam_update_group(AdamGroup& group, double plr, bool decay, int64_t t, const AdamConfig& config) {
  if (group.params.empty()) return;
  torch::NoGradGuard no_grad;
  // The kernel reads Adam's step count (for the bias corrections) from one tensor per parameter;
  // it does not advance them (the optimizer tests' double-precision check would see a step off by
  // one in the bias corrections), so one tensor holding t serves the whole group.
  const torch::Tensor step = torch::full({}, static_cast<double>(t), group.params.front().options());
  const std::vector<torch::Tensor> steps(group.params.size(), step);
  at::_fused_adamw_(group.params, group.grads, group.exp_avgs, group.exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps,
                    plr, config.beta1, config.beta2, decay ? config.weight_decay : 0.0, config.eps,
                    /*amsgrad=*/false, /*maximize=*/false);
}

void Adam::step(double lr, const LrMult& mult, const std::vector<torch::Tensor>& grads, double grad_scale) {
  TORCH_CHECK(grads.size() == slots_.size(), "Adam::step: ", grads.size(), " gradients for ", slots_.size(),
              " parameters");
  ++steps_;
  std::vector<AdamItem> items;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    if (grads[i].defined())
      items.push_back({s.param, grads[i], s.exp_avg, s.exp_avg_sq, lr * lr_multiplier(s.name, mult), s.decay});
  }
  adam_update_all(items, steps_, config_, grad_scale);
}

void adam_update_all(const std::vector<AdamItem>& items, int64_t t, const AdamConfig& config, double grad_scale) {
  // On CUDA one fused pass per (learning rate, decay) group: three or four launches per step
  // rather than seven kernels per tensor (trainer/README.md "Optimizer and schedule").
  const bool grouped = !items.empty() && items.front().param.is_cuda();
  std::vector<std::pair<std::pair<double, bool>, AdamGroup>> groups;
  for (const auto& item : items) {
    if (!grouped) {
      auto param = item.param, m = item.exp_avg, v = item.exp_avg_sq;
      adam_update(param, item.grad, m, v, item.plr, item.decay, t, config, grad_scale);
      continue;
    }
    const std::pair key{item.plr, item.decay};
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& e) { return e.first == key; });
    if (it == groups.end()) it = groups.insert(groups.end(), {key, AdamGroup{}});
    it->second.params.push_back(item.param);
    it->second.grads.push_back(item.grad);
    it->second.exp_avgs.push_back(item.exp_avg);
    it->second.exp_avg_sqs.push_back(item.exp_avg_sq);
  }
  if (grad_scale != 1.0) {
    torch::NoGradGuard no_grad;
    for (auto& [key, group] : groups) at::_foreach_mul_(group.grads, grad_scale);
  }
  for (auto& [key, group] : groups) adam_update_group(group, key.first, key.second, t, config);
}

NamedTensors Adam::state() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    out.push_back({"exp_avg." + s.name, s.exp_avg});
    out.push_back({"exp_avg_sq." + s.name, s.exp_avg_sq});
  }
  return out;
}

void Adam::load_state(const NamedTensors& state, int64_t steps) {
  torch::NoGradGuard no_grad;
  const auto restore = [&](const std::string& key, torch::Tensor& dst) {
    dst.copy_(require_tensor(state, key, dst.sizes(), "optimizer state"));
  };
  for (auto& s : slots_) {
    restore("exp_avg." + s.name, s.exp_avg);
    restore("exp_avg_sq." + s.name, s.exp_avg_sq);
  }
  steps_ = steps;
}

torch::Tensor global_grad_norm(const std::vector<torch::Tensor>& grads, const torch::Device& device) {
  if (grads.empty()) return torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  // One norm per tensor in its own dtype (no fp64 copy of the gradients: it cost more than Adam on
  // a 169M CPU step; ATen's CPU reductions of fp32 accumulate in double already), then their
  // squares summed in double, all on the device.
  const auto norms = at::_foreach_norm(grads, 2);
  return torch::stack(norms).to(torch::kFloat64).square().sum().sqrt();
}

double clip_coefficient(double norm, double max_norm) {
  return max_norm <= 0 || !(norm > max_norm) ? 1.0 : max_norm / (norm + 1e-6);
}

}  // namespace rwkv::trainer
