#include "rwkv/token_shift.h"

#include <ATen/autocast_mode.h>

#include "kernels/token_mix_op.h"

namespace rwkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// μ_j as the kernels take it: D contiguous elements in the parameters' own dtype (the first μ's;
// the model's μ share one). A (1, 1, D) parameter gives a view: no cast or copy is launched, and
// the kernels read fp32 or bf16 μ whatever x's dtype.
std::vector<torch::Tensor> mu_vectors(at::TensorList mu) {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& m : mu) out.push_back(m.to(mu[0].scalar_type()).reshape({-1}).contiguous());
  return out;
}

// Inputs: x, prev (absent for a fresh sequence), μ_0 … μ_{n−1}; outputs: the n mixes.
class TokenShiftMixFunction : public torch::autograd::Function<TokenShiftMixFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const std::optional<torch::Tensor>& prev,
                               at::TensorList mu, at::ScalarType mix_dtype) {
    kernels::TokenMixForwardArgs a;
    a.x = x.contiguous();
    if (prev) a.prev = prev->to(x.scalar_type()).contiguous();
    a.mu = mu_vectors(mu);
    for (size_t m = 0; m < mu.size(); ++m) a.out.push_back(torch::empty(x.sizes(), x.options().dtype(mix_dtype)));
    kernels::token_mix_forward(a);
    variable_list saved = {a.x, a.prev};
    saved.insert(saved.end(), mu.begin(), mu.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["prev_dtype"] = static_cast<int64_t>(prev ? prev->scalar_type() : x.scalar_type());
    ctx->saved_data["mix_dtype"] = static_cast<int64_t>(mix_dtype);
    return a.out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    kernels::TokenMixBackwardArgs a;
    a.x = saved[0];
    a.prev = saved[1];
    const std::vector<torch::Tensor> mu(saved.begin() + 2, saved.end());
    a.mu = mu_vectors(mu);
    const auto mix_dtype = static_cast<torch::ScalarType>(ctx->saved_data["mix_dtype"].toInt());
    for (const torch::Tensor& g : grads)
      a.gout.push_back(g.defined() ? g.to(mix_dtype).contiguous() : torch::zeros(a.x.sizes(), a.x.options().dtype(mix_dtype)));
    a.gx = torch::empty_like(a.x);
    if (a.prev.defined()) a.gprev = torch::empty_like(a.prev);
    for (const torch::Tensor& m : a.mu) a.gmu.push_back(torch::empty_like(m));
    kernels::token_mix_backward(a);

    variable_list out = {a.gx, a.prev.defined() ? a.gprev.to(static_cast<torch::ScalarType>(
                                                      ctx->saved_data["prev_dtype"].toInt()))
                                                : torch::Tensor()};
    for (size_t m = 0; m < a.gmu.size(); ++m)
      out.push_back(a.gmu[m].to(mu[m].scalar_type()).view(mu[m].sizes()));
    out.push_back(torch::Tensor());  // mix_dtype
    return out;
  }
};

// bf16 under autocast to bf16 on x's device, else x's dtype.
at::ScalarType mix_dtype_for(const torch::Tensor& x) {
  const auto device = x.device().type();
  if (x.scalar_type() == at::kFloat && at::autocast::is_autocast_enabled(device) &&
      at::autocast::get_autocast_dtype(device) == at::kBFloat16)
    return at::kBFloat16;
  return x.scalar_type();
}

}  // namespace

std::vector<torch::Tensor> token_shift_mix(const torch::Tensor& x, const torch::Tensor& prev,
                                           const std::vector<torch::Tensor>& mu) {
  TORCH_CHECK(x.dim() == 3, "token_shift_mix expects x of shape (B, T, D), got ", x.sizes());
  TORCH_CHECK(!mu.empty() && mu.size() <= static_cast<size_t>(kernels::token_mix::kMaxMixes),
              "token_shift_mix takes 1 to ", kernels::token_mix::kMaxMixes, " mixes, got ", mu.size());
  for (const torch::Tensor& m : mu)
    TORCH_CHECK(m.numel() == x.size(2), "token_shift_mix: μ of shape ", m.sizes(), " for D = ", x.size(2));
  if (prev.defined())
    TORCH_CHECK(prev.numel() == x.size(0) * x.size(2), "token_shift_mix: prev of shape ", prev.sizes(),
                " for x of shape ", x.sizes());
  const std::optional<torch::Tensor> p = prev.defined() ? std::optional<torch::Tensor>(prev.reshape({x.size(0), x.size(2)}))
                                                        : std::nullopt;
  return TokenShiftMixFunction::apply(x, p, at::TensorList(mu), mix_dtype_for(x));
}

}  // namespace rwkv
