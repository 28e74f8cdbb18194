#include "rwkv/wkv.h"

#include "kernels/wkv_math.h"
#include "kernels/wkv_op.h"

namespace rwkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inputs: time_decay, time_first, k, v, aa0, bb0, pp0. Outputs: y, aa_T, bb_T, pp_T.
// pp_T is marked non-differentiable: a consumer of the state depends on it only through
// A = aa·e^pp and B = bb·e^pp, whose gradients flow through aa_T and bb_T (kernels/wkv_math.h,
// adjoint_from_final), so the pp component carries no further information.
class WkvFunction : public torch::autograd::Function<WkvFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& time_decay,
                               const torch::Tensor& time_first, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& aa0, const torch::Tensor& bb0, const torch::Tensor& pp0) {
    const auto acc = kernels::wkv_acc_dtype(k.scalar_type());
    // kernels/README.md "WKV": the decay is w = -exp(time_decay), computed in fp32 (fp64 for fp64 checks).
    const torch::Tensor w = -torch::exp(time_decay.to(acc)).contiguous();
    const torch::Tensor u = time_first.to(acc).contiguous();
    const torch::Tensor kc = k.contiguous(), vc = v.contiguous();
    const torch::Tensor s_aa = aa0.to(acc).contiguous(), s_bb = bb0.to(acc).contiguous(),
                        s_pp = pp0.to(acc).contiguous();
    kernels::WkvForwardArgs a{w, u, kc, vc, s_aa.clone(), s_bb.clone(), s_pp.clone(), torch::empty_like(kc)};
    kernels::wkv_forward(a);
    ctx->save_for_backward({w, u, kc, vc, s_aa, s_bb, s_pp});
    ctx->saved_data["dtypes"] = std::vector<int64_t>{
        static_cast<int64_t>(time_decay.scalar_type()), static_cast<int64_t>(time_first.scalar_type()),
        static_cast<int64_t>(k.scalar_type()),          static_cast<int64_t>(v.scalar_type()),
        static_cast<int64_t>(aa0.scalar_type()),        static_cast<int64_t>(bb0.scalar_type()),
        static_cast<int64_t>(pp0.scalar_type())};
    ctx->mark_non_differentiable({a.pp});
    return {a.y, a.aa, a.bb, a.pp};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &w = saved[0], &u = saved[1], &k = saved[2], &v = saved[3];
    kernels::WkvBackwardArgs a;
    a.w = w;
    a.u = u;
    a.k = k;
    a.v = v;
    a.aa0 = saved[4];
    a.bb0 = saved[5];
    a.pp0 = saved[6];
    const auto state_zeros = [&] { return torch::zeros_like(a.aa0); };
    a.gy = grads[0].defined() ? grads[0].to(k.scalar_type()).contiguous() : torch::zeros_like(k);
    a.g_aa_T = grads[1].defined() ? grads[1].to(w.scalar_type()).contiguous() : state_zeros();
    a.g_bb_T = grads[2].defined() ? grads[2].to(w.scalar_type()).contiguous() : state_zeros();
    a.gk = torch::empty_like(k);
    a.gv = torch::empty_like(v);
    a.gw = torch::empty_like(a.aa0);
    a.gu = torch::empty_like(a.aa0);
    a.g_aa0 = torch::empty_like(a.aa0);
    a.g_bb0 = torch::empty_like(a.aa0);
    a.g_pp0 = torch::empty_like(a.aa0);
    kernels::wkv_backward(a);

    const auto dtypes = ctx->saved_data["dtypes"].toIntVector();
    const auto as = [&](const torch::Tensor& t, size_t i) { return t.to(static_cast<torch::ScalarType>(dtypes[i])); };
    // The (B, C) partials reduce over the batch (kernels/README.md "WKV"); ∂L/∂d = w·∂L/∂w since w = -e^d.
    const torch::Tensor g_decay = w * a.gw.sum(0);
    const torch::Tensor g_first = a.gu.sum(0);
    return {as(g_decay, 0), as(g_first, 1), as(a.gk, 2),    as(a.gv, 3),
            as(a.g_aa0, 4), as(a.g_bb0, 5), as(a.g_pp0, 6)};
  }
};

}  // namespace

WkvState wkv_initial_state(int64_t batch, int64_t channels, const torch::Device& device) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  return WkvState{torch::zeros({batch, channels}, opts), torch::zeros({batch, channels}, opts),
                  torch::full({batch, channels}, kernels::wkv::kEmptyExponent, opts)};
}

WkvOutput wkv(const torch::Tensor& time_decay, const torch::Tensor& time_first, const torch::Tensor& k,
              const torch::Tensor& v, const std::optional<WkvState>& state) {
  TORCH_CHECK(k.dim() == 3, "wkv: k must be (B, T, C), got ", k.sizes());
  const WkvState s0 = state ? *state : wkv_initial_state(k.size(0), k.size(2), k.device());
  const auto out = WkvFunction::apply(time_decay, time_first, k, v, s0.aa, s0.bb, s0.pp);
  return WkvOutput{out[0], WkvState{out[1], out[2], out[3]}};
}

}  // namespace rwkv
