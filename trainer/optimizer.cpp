#include "trainer/optimizer.h"

#include <cmath>
#include <stdexcept>

namespace rwkv::trainer {

double lr_multiplier(const std::string& name, const LrMult& mult) {
  const auto dot = name.rfind('.');
  const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
  double m = 1.0;
  for (const auto& [key, value] : mult) {
    const bool wildcard = !key.empty() && key.back() == '*';
    if (wildcard ? last.rfind(key.substr(0, key.size() - 1), 0) == 0 : last == key) m *= value;
  }
  return m;
}

Adam::Adam(NamedTensors params, const OptimizerConfig& config) : config_(config) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    TORCH_CHECK(p.scalar_type() == torch::kFloat32, "Adam keeps fp32 master weights; ", name, " is ",
                p.scalar_type());
    slots_.push_back({name, p, torch::zeros_like(p), torch::zeros_like(p), p.dim() == 2});
  }
}

void Adam::step(double lr, const LrMult& mult) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(steps_));
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    const double plr = lr * lr_multiplier(s.name, mult);
    if (s.decay && config_.weight_decay > 0) s.param.mul_(1.0 - plr * config_.weight_decay);
    s.exp_avg.lerp_(g, 1.0 - config_.beta1);
    s.exp_avg_sq.mul_(config_.beta2).addcmul_(g, g, 1.0 - config_.beta2);
    const auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(config_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -plr / bc1);
  }
}

NamedTensors Adam::state() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    out.emplace_back("exp_avg." + s.name, s.exp_avg);
    out.emplace_back("exp_avg_sq." + s.name, s.exp_avg_sq);
  }
  return out;
}

void Adam::load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps) {
  torch::NoGradGuard no_grad;
  const auto restore = [&](const std::string& key, torch::Tensor& dst) {
    const auto it = state.find(key);
    if (it == state.end()) throw std::runtime_error("optimizer state has no '" + key + "'");
    if (!it->second.sizes().equals(dst.sizes()))
      throw std::runtime_error("optimizer state '" + key + "' has the wrong shape");
    dst.copy_(it->second);
  };
  for (auto& s : slots_) {
    restore("exp_avg." + s.name, s.exp_avg);
    restore("exp_avg_sq." + s.name, s.exp_avg_sq);
  }
  steps_ = steps;
}

double global_grad_norm(const NamedTensors& params) {
  double sq = 0;
  for (const auto& [name, p] : params) {
    if (!p.grad().defined()) continue;
    const double n = p.grad().detach().to(torch::kFloat64).norm().item<double>();
    sq += n * n;
  }
  return std::sqrt(sq);
}

void clip_gradients(const NamedTensors& params, double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return;
  torch::NoGradGuard no_grad;
  const double coef = max_norm / (norm + 1e-6);
  for (const auto& [name, p] : params)
    if (p.grad().defined()) p.grad().mul_(coef);
}

}  // namespace rwkv::trainer
