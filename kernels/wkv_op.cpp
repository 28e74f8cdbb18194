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
std::array<int64_t, 3> check_common(const at::Tensor& time_decay, const at::Tensor& time_first, const at::Tensor& k,
                                    const at::Tensor& v) {
  TORCH_CHECK(k.defined() && k.dim() == 3, "wkv: k must be (B, T, C), got ", k.sizes());
  const auto io = k.scalar_type();
  TORCH_CHECK(io == at::kFloat || io == at::kBFloat16 || (io == at::kDouble && k.is_cpu()),
              "wkv: k/v dtype must be float32 or bfloat16 (float64 on the CPU), got ", io);
  TORCH_CHECK(k.is_cpu() || k.is_cuda(), "wkv: unsupported device ", k.device());
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  TORCH_CHECK(B > 0 && T > 0 && C > 0, "wkv: empty input of shape ", k.sizes());
  check_tensor(k, "k", io, {B, T, C}, k.device());
  check_tensor(v, "v", io, {B, T, C}, k.device());
  TORCH_CHECK(time_decay.defined(), "wkv: time_decay is missing");
  const auto param = time_decay.scalar_type();
  TORCH_CHECK(param == at::kFloat || param == at::kBFloat16 || (param == at::kDouble && k.is_cpu()),
              "wkv: time_decay dtype must be float32 or bfloat16 (float64 on the CPU), got ", param);
  check_tensor(time_decay, "time_decay", param, {C}, k.device());
  check_tensor(time_first, "time_first", param, {C}, k.device());
  return {B, T, C};
}

// The three tensors of a state: all defined (then checked) or none.
bool check_state(const at::Tensor& aa, const at::Tensor& bb, const at::Tensor& pp, const char* names[3],
                 at::ScalarType acc, at::IntArrayRef shape, const at::Device& device) {
  const at::Tensor* parts[3] = {&aa, &bb, &pp};
  const bool given = aa.defined();
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK(!given || parts[i]->defined(), "wkv: ", names[i], " is missing (", names[0], " is given)");
    TORCH_CHECK(given || !parts[i]->defined(), "wkv: ", names[i], " is given without ", names[0]);
    if (given) check_tensor(*parts[i], names[i], acc, shape, device);
  }
  return given;
}

template <class T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

}  // namespace

at::ScalarType wkv_acc_dtype(at::ScalarType io_dtype) {
  return io_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

WkvIo wkv_kernel_io(const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16,
              "wkv kernels: k/v and the parameters must be float32 or bfloat16, got ", t.scalar_type());
  return t.scalar_type() == at::kBFloat16 ? WkvIo::bf16 : WkvIo::f32;
}

at::Tensor wkv_backward_workspace(const at::Tensor& k) {
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  return at::empty({3 * B * T * C + 2 * B * C}, k.options().dtype(wkv_acc_dtype(k.scalar_type())));
}

WkvCudaForward wkv_kernel_args(const WkvForwardArgs& a) {
  return WkvCudaForward{a.k.size(0), a.k.size(1), a.k.size(2), wkv_kernel_io(a.time_decay), a.time_decay.data_ptr(),
                        a.time_first.data_ptr(), a.k.data_ptr(), a.v.data_ptr(), a.y.data_ptr(),
                        ptr_or_null<float>(a.aa0), ptr_or_null<float>(a.bb0), ptr_or_null<float>(a.pp0),
                        a.aa.data_ptr<float>(), a.bb.data_ptr<float>(), a.pp.data_ptr<float>()};
}

WkvCudaBackward wkv_kernel_args(const WkvBackwardArgs& a, const at::Tensor& workspace) {
  const int64_t B = a.k.size(0), T = a.k.size(1), C = a.k.size(2);
  TORCH_CHECK(workspace.numel() == 3 * B * T * C + 2 * B * C && workspace.scalar_type() == at::kFloat,
              "wkv kernels: the workspace must be wkv_backward_workspace(k)");
  float* ws = workspace.data_ptr<float>();
  return WkvCudaBackward{B,
                         T,
                         C,
                         wkv_kernel_io(a.time_decay),
                         a.time_decay.data_ptr(),
                         a.time_first.data_ptr(),
                         a.k.data_ptr(),
                         a.v.data_ptr(),
                         a.gy.data_ptr(),
                         ptr_or_null<float>(a.aa0),
                         ptr_or_null<float>(a.bb0),
                         ptr_or_null<float>(a.pp0),
                         ptr_or_null<float>(a.g_aa_T),
                         ptr_or_null<float>(a.g_bb_T),
                         a.gk.data_ptr(),
                         a.gv.data_ptr(),
                         a.g_decay.data_ptr(),
                         a.g_first.data_ptr(),
                         ptr_or_null<float>(a.g_aa0),
                         ptr_or_null<float>(a.g_bb0),
                         ptr_or_null<float>(a.g_pp0),
                         ws + 3 * B * T * C,
                         ws + 3 * B * T * C + B * C,
                         ws};
}

void wkv_forward(const WkvForwardArgs& a) {
  const auto [B, T, C] = check_common(a.time_decay, a.time_first, a.k, a.v);
  const auto acc = wkv_acc_dtype(a.k.scalar_type());
  const auto dev = a.k.device();
  check_tensor(a.y, "y", a.k.scalar_type(), {B, T, C}, dev);
  const char* initial[3] = {"aa0", "bb0", "pp0"};
  check_state(a.aa0, a.bb0, a.pp0, initial, acc, {B, C}, dev);
  const char* final_state[3] = {"aa", "bb", "pp"};
  TORCH_CHECK(check_state(a.aa, a.bb, a.pp, final_state, acc, {B, C}, dev), "wkv: the final state aa, bb, pp is missing");
  // Every tensor the kernel reads or writes, for the kernel census (trainer/bench/op_census.h).
  std::vector<c10::IValue> touched;
  for (const at::Tensor* t : {&a.time_decay, &a.time_first, &a.k, &a.v, &a.aa0, &a.bb0, &a.pp0, &a.aa, &a.bb, &a.pp, &a.y})
    if (t->defined()) touched.emplace_back(*t);
  RECORD_FUNCTION("rwkv::wkv_forward", touched);
  if (a.k.is_cuda())
    wkv_forward_cuda(a);
  else
    wkv_forward_cpu(a);
}

void wkv_backward(const WkvBackwardArgs& a) {
  const auto [B, T, C] = check_common(a.time_decay, a.time_first, a.k, a.v);
  const auto io = a.k.scalar_type(), param = a.time_decay.scalar_type();
  const auto acc = wkv_acc_dtype(io);
  const auto dev = a.k.device();
  for (const auto& [t, name] : {std::pair{&a.gy, "gy"}, {&a.gk, "gk"}, {&a.gv, "gv"}})
    check_tensor(*t, name, io, {B, T, C}, dev);
  check_tensor(a.g_decay, "g_decay", param, {C}, dev);
  check_tensor(a.g_first, "g_first", param, {C}, dev);
  const char* initial[3] = {"aa0", "bb0", "pp0"};
  const bool carried = check_state(a.aa0, a.bb0, a.pp0, initial, acc, {B, C}, dev);
  const char* initial_grads[3] = {"g_aa0", "g_bb0", "g_pp0"};
  TORCH_CHECK(check_state(a.g_aa0, a.g_bb0, a.g_pp0, initial_grads, acc, {B, C}, dev) == carried,
              "wkv: the initial state's gradients g_aa0, g_bb0, g_pp0 go with an initial state aa0, bb0, pp0");
  TORCH_CHECK(a.g_aa_T.defined() == a.g_bb_T.defined(), "wkv: g_aa_T and g_bb_T come together");
  if (a.g_aa_T.defined()) {
    check_tensor(a.g_aa_T, "g_aa_T", acc, {B, C}, dev);
    check_tensor(a.g_bb_T, "g_bb_T", acc, {B, C}, dev);
  }
  const at::Tensor workspace = wkv_backward_workspace(a.k);
  std::vector<c10::IValue> touched;
  for (const at::Tensor* t : {&a.time_decay, &a.time_first, &a.k, &a.v, &a.aa0, &a.bb0, &a.pp0, &a.gy, &a.g_aa_T,
                              &a.g_bb_T, &a.gk, &a.gv, &a.g_decay, &a.g_first, &a.g_aa0, &a.g_bb0, &a.g_pp0, &workspace})
    if (t->defined()) touched.emplace_back(*t);
  RECORD_FUNCTION("rwkv::wkv_backward", touched);
  if (a.k.is_cuda())
    wkv_backward_cuda(a, workspace);
  else
    wkv_backward_cpu(a, workspace);
}

}  // namespace rwkv::kernels
