#include "kernels/wkv_op.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include "kernels/wkv_cpu.h"

namespace rwkv::kernels {
namespace {

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, at::IntArrayRef shape,
                  const at::Device& device) {
  TORCH_CHECK(t.defined(), "wkv: ", name, " is missing");
  TORCH_CHECK(t.scalar_type() == dtype, "wkv: ", name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.sizes() == shape, "wkv: ", name, " has shape ", t.sizes(), ", expected ", shape);
  TORCH_CHECK(t.device() == device, "wkv: ", name, " is on ", t.device(), ", expected ", device);
  TORCH_CHECK(t.is_contiguous(), "wkv: ", name, " must be contiguous");
}

// Checks the tensors every call shares; returns (B, T, C).
std::array<int64_t, 3> check_common(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                                    const at::Tensor& v) {
  TORCH_CHECK(k.defined() && k.dim() == 3, "wkv: k must be (B, T, C), got ", k.sizes());
  const auto io = k.scalar_type();
  TORCH_CHECK(io == at::kFloat || io == at::kBFloat16 || (io == at::kDouble && k.is_cpu()),
              "wkv: k/v dtype must be float32 or bfloat16 (float64 on the CPU), got ", io);
  TORCH_CHECK(k.is_cpu() || k.is_cuda(), "wkv: unsupported device ", k.device());
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  TORCH_CHECK(B > 0 && T > 0 && C > 0, "wkv: empty input of shape ", k.sizes());
  const auto acc = wkv_acc_dtype(io);
  check_tensor(k, "k", io, {B, T, C}, k.device());
  check_tensor(v, "v", io, {B, T, C}, k.device());
  check_tensor(w, "w", acc, {C}, k.device());
  check_tensor(u, "u", acc, {C}, k.device());
  return {B, T, C};
}

}  // namespace

at::ScalarType wkv_acc_dtype(at::ScalarType io_dtype) {
  return io_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

WkvIo wkv_kernel_io(const at::Tensor& k) {
  TORCH_CHECK(k.scalar_type() == at::kFloat || k.scalar_type() == at::kBFloat16,
              "wkv kernels: k/v must be float32 or bfloat16, got ", k.scalar_type());
  return k.scalar_type() == at::kBFloat16 ? WkvIo::bf16 : WkvIo::f32;
}

WkvCudaForward wkv_kernel_args(const WkvForwardArgs& a) {
  return WkvCudaForward{a.k.size(0),           a.k.size(1),           a.k.size(2),    a.w.data_ptr<float>(),
                        a.u.data_ptr<float>(), a.k.data_ptr(),        a.v.data_ptr(), a.y.data_ptr(),
                        a.aa.data_ptr<float>(), a.bb.data_ptr<float>(), a.pp.data_ptr<float>()};
}

WkvCudaBackward wkv_kernel_args(const WkvBackwardArgs& a, const at::Tensor& workspace) {
  return WkvCudaBackward{a.k.size(0),
                         a.k.size(1),
                         a.k.size(2),
                         a.w.data_ptr<float>(),
                         a.u.data_ptr<float>(),
                         a.k.data_ptr(),
                         a.v.data_ptr(),
                         a.gy.data_ptr(),
                         a.aa0.data_ptr<float>(),
                         a.bb0.data_ptr<float>(),
                         a.pp0.data_ptr<float>(),
                         a.g_aa_T.data_ptr<float>(),
                         a.g_bb_T.data_ptr<float>(),
                         a.gk.data_ptr(),
                         a.gv.data_ptr(),
                         a.gw.data_ptr<float>(),
                         a.gu.data_ptr<float>(),
                         a.g_aa0.data_ptr<float>(),
                         a.g_bb0.data_ptr<float>(),
                         a.g_pp0.data_ptr<float>(),
                         workspace.data_ptr<float>()};
}

void wkv_forward(const WkvForwardArgs& a) {
  const auto [B, T, C] = check_common(a.w, a.u, a.k, a.v);
  const auto acc = wkv_acc_dtype(a.k.scalar_type());
  const auto dev = a.k.device();
  check_tensor(a.y, "y", a.k.scalar_type(), {B, T, C}, dev);
  for (const auto& [t, name] : {std::pair{&a.aa, "aa"}, {&a.bb, "bb"}, {&a.pp, "pp"}})
    check_tensor(*t, name, acc, {B, C}, dev);
  // Every tensor the kernel reads or writes, for the kernel census (trainer/bench/op_census.h).
  RECORD_FUNCTION("rwkv::wkv_forward", std::vector<c10::IValue>({a.w, a.u, a.k, a.v, a.aa, a.bb, a.pp, a.y}));
  if (a.k.is_cuda())
    wkv_forward_cuda(a);
  else
    wkv_forward_cpu(a);
}

void wkv_backward(const WkvBackwardArgs& a) {
  const auto [B, T, C] = check_common(a.w, a.u, a.k, a.v);
  const auto io = a.k.scalar_type();
  const auto acc = wkv_acc_dtype(io);
  const auto dev = a.k.device();
  for (const auto& [t, name] : {std::pair{&a.gy, "gy"}, {&a.gk, "gk"}, {&a.gv, "gv"}})
    check_tensor(*t, name, io, {B, T, C}, dev);
  for (const auto& [t, name] :
       {std::pair{&a.aa0, "aa0"}, {&a.bb0, "bb0"}, {&a.pp0, "pp0"}, {&a.g_aa_T, "g_aa_T"}, {&a.g_bb_T, "g_bb_T"},
        {&a.gw, "gw"}, {&a.gu, "gu"}, {&a.g_aa0, "g_aa0"}, {&a.g_bb0, "g_bb0"}, {&a.g_pp0, "g_pp0"}})
    check_tensor(*t, name, acc, {B, C}, dev);
  const at::Tensor workspace = at::empty({3, B, T, C}, a.k.options().dtype(acc));
  RECORD_FUNCTION("rwkv::wkv_backward",
                  std::vector<c10::IValue>({a.w, a.u, a.k, a.v, a.aa0, a.bb0, a.pp0, a.gy, a.g_aa_T, a.g_bb_T, a.gk,
                                            a.gv, a.gw, a.gu, a.g_aa0, a.g_bb0, a.g_pp0, workspace}));
  if (a.k.is_cuda())
    wkv_backward_cuda(a, workspace);
  else
    wkv_backward_cpu(a, workspace);
}

}  // namespace rwkv::kernels
