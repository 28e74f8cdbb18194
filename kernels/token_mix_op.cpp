#include "kernels/token_mix_op.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include "kernels/token_mix_cpu.h"

namespace rwkv::kernels {
namespace {

void check_tensor(const at::Tensor& t, const std::string& name, at::ScalarType dtype, at::IntArrayRef shape,
                  const at::Device& device) {
  TORCH_CHECK(t.defined(), "token mix: ", name, " is missing");
  TORCH_CHECK(t.scalar_type() == dtype, "token mix: ", name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.sizes() == shape, "token mix: ", name, " has shape ", t.sizes(), ", expected ", shape);
  TORCH_CHECK(t.device() == device, "token mix: ", name, " is on ", t.device(), ", expected ", device);
  TORCH_CHECK(t.is_contiguous(), "token mix: ", name, " must be contiguous");
}

// Checks x, prev, μ and the mix tensors (out or gout, `mixed_name`); returns (B, T, C).
std::array<int64_t, 3> check_common(const at::Tensor& x, const at::Tensor& prev, const std::vector<at::Tensor>& mu,
                                    const std::vector<at::Tensor>& mixed, const char* mixed_name) {
  TORCH_CHECK(x.defined() && x.dim() == 3, "token mix: x must be (B, T, C), got ", x.sizes());
  const auto xt = x.scalar_type();
  TORCH_CHECK(xt == at::kFloat || xt == at::kBFloat16 || (xt == at::kDouble && x.is_cpu()),
              "token mix: x dtype must be float32 or bfloat16 (float64 on the CPU), got ", xt);
  TORCH_CHECK(x.is_cpu() || x.is_cuda(), "token mix: unsupported device ", x.device());
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  TORCH_CHECK(B > 0 && T > 0 && C > 0, "token mix: empty input of shape ", x.sizes());
  check_tensor(x, "x", xt, {B, T, C}, x.device());
  if (prev.defined()) check_tensor(prev, "prev", xt, {B, C}, x.device());
  const size_t n = mu.size();
  TORCH_CHECK(n >= 1 && n <= static_cast<size_t>(token_mix::kMaxMixes), "token mix: 1 to ", token_mix::kMaxMixes,
              " mixes, got ", n);
  TORCH_CHECK(mixed.size() == n, "token mix: ", n, " mixes but ", mixed.size(), " ", mixed_name, " tensors");
  TORCH_CHECK(mixed[0].defined(), "token mix: ", mixed_name, "[0] is missing");
  const auto yt = mixed[0].scalar_type();
  TORCH_CHECK(yt == xt || (xt == at::kFloat && yt == at::kBFloat16), "token mix: ", mixed_name, " dtype ", yt,
              " for x of dtype ", xt, " (the x dtype, or bfloat16 for float32 x)");
  TORCH_CHECK(mu[0].defined(), "token mix: mu[0] is missing");
  const auto mt = mu[0].scalar_type();
  TORCH_CHECK(mt == at::kFloat || mt == at::kBFloat16 || (mt == at::kDouble && x.is_cpu()),
              "token mix: mu dtype must be float32 or bfloat16 (float64 on the CPU), got ", mt);
  for (size_t m = 0; m < n; ++m) {
    check_tensor(mu[m], "mu[" + std::to_string(m) + "]", mt, {C}, x.device());
    check_tensor(mixed[m], std::string(mixed_name) + "[" + std::to_string(m) + "]", yt, {B, T, C}, x.device());
  }
  return {B, T, C};
}

std::vector<c10::IValue> census_inputs(std::initializer_list<const at::Tensor*> single,
                                       std::initializer_list<const std::vector<at::Tensor>*> lists) {
  std::vector<c10::IValue> v;
  for (const at::Tensor* t : single)
    if (t->defined()) v.emplace_back(*t);
  for (const auto* l : lists)
    for (const at::Tensor& t : *l) v.emplace_back(t);
  return v;
}

}  // namespace

TokenMixIo token_mix_kernel_io(const at::Tensor& x, const at::Tensor& mixed) {
  const auto xt = x.scalar_type(), yt = mixed.scalar_type();
  if (xt == at::kFloat && yt == at::kFloat) return TokenMixIo::f32;
  if (xt == at::kFloat && yt == at::kBFloat16) return TokenMixIo::f32_bf16;
  TORCH_CHECK(xt == at::kBFloat16 && yt == at::kBFloat16, "token mix kernels: x ", xt, " with mixes ", yt,
              " (float32/float32, float32/bfloat16 or bfloat16/bfloat16)");
  return TokenMixIo::bf16;
}

TokenMixParam token_mix_kernel_param(const at::Tensor& mu) {
  TORCH_CHECK(mu.scalar_type() == at::kFloat || mu.scalar_type() == at::kBFloat16,
              "token mix kernels: mu must be float32 or bfloat16, got ", mu.scalar_type());
  return mu.scalar_type() == at::kBFloat16 ? TokenMixParam::bf16 : TokenMixParam::f32;
}

TokenMixCudaForward token_mix_kernel_args(const TokenMixForwardArgs& a, int64_t chunk) {
  TokenMixCudaForward k{a.x.size(0),    a.x.size(1),   a.x.size(2), chunk, static_cast<int>(a.mu.size()),
                        token_mix_kernel_param(a.mu[0]), a.x.data_ptr(), a.prev.defined() ? a.prev.data_ptr() : nullptr,
                        {},             {}};
  for (size_t m = 0; m < a.mu.size(); ++m) {
    k.mu[m] = a.mu[m].data_ptr();
    k.out[m] = a.out[m].data_ptr();
  }
  return k;
}

TokenMixCudaBackward token_mix_kernel_args(const TokenMixBackwardArgs& a, int64_t chunk,
                                           const at::Tensor& gmu_partial) {
  TokenMixCudaBackward k{a.x.size(0),
                         a.x.size(1),
                         a.x.size(2),
                         chunk,
                         static_cast<int>(a.mu.size()),
                         token_mix_kernel_param(a.mu[0]),
                         a.x.data_ptr(),
                         a.prev.defined() ? a.prev.data_ptr() : nullptr,
                         {},
                         {},
                         a.gx.data_ptr(),
                         a.gprev.defined() ? a.gprev.data_ptr() : nullptr,
                         {}};
  for (size_t m = 0; m < a.mu.size(); ++m) {
    k.mu[m] = a.mu[m].data_ptr();
    k.gout[m] = a.gout[m].data_ptr();
    k.gmu_partial[m] = gmu_partial[static_cast<int64_t>(m)].data_ptr<float>();
  }
  return k;
}

void token_mix_forward(const TokenMixForwardArgs& a) {
  check_common(a.x, a.prev, a.mu, a.out, "out");
  // Every tensor the kernel reads or writes, for the kernel census (trainer/bench/op_census.h).
  RECORD_FUNCTION("rwkv::token_mix_forward", census_inputs({&a.x, &a.prev}, {&a.mu, &a.out}));
  if (a.x.is_cuda())
    token_mix_forward_cuda(a);
  else
    token_mix_forward_cpu(a);
}

void token_mix_backward(const TokenMixBackwardArgs& a) {
  const auto [B, T, C] = check_common(a.x, a.prev, a.mu, a.gout, "gout");
  check_tensor(a.gx, "gx", a.x.scalar_type(), {B, T, C}, a.x.device());
  if (a.gprev.defined()) check_tensor(a.gprev, "gprev", a.x.scalar_type(), {B, C}, a.x.device());
  TORCH_CHECK(a.gmu.size() == a.mu.size(), "token mix: ", a.mu.size(), " mixes but ", a.gmu.size(), " gmu tensors");
  for (size_t m = 0; m < a.gmu.size(); ++m)
    check_tensor(a.gmu[m], "gmu[" + std::to_string(m) + "]", a.mu[m].scalar_type(), {C}, a.x.device());
  RECORD_FUNCTION("rwkv::token_mix_backward", census_inputs({&a.x, &a.prev, &a.gx, &a.gprev}, {&a.mu, &a.gout, &a.gmu}));
  if (a.x.is_cuda())
    token_mix_backward_cuda(a);
  else
    token_mix_backward_cpu(a);
}

}  // namespace rwkv::kernels
