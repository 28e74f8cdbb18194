#include "rwkv/wkv.h"

#include "kernels/wkv_math.h"
#include "kernels/wkv_op.h"

namespace rwkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inputs: time_decay, time_first, k, v, aa0, bb0, pp0 (all three absent: a fresh sequence).
// Outputs: y, aa_T, bb_T, pp_T. pp_T is marked non-differentiable: a consumer of the state depends
// on it only through A = aa·e^pp and B = bb·e^pp, whose gradients flow through aa_T and bb_T
// (kernels/wkv_math.h, adjoint_from_final), so the pp component carries no further information.
// The kernels read time_decay and time_first as stored and compute w = −exp(time_decay) themselves,
// and start a fresh sequence from the empty state without tensors for it: the forward launches
// the WKV kernel alone, whatever the parameters' dtype.
class WkvFunction : public torch::autograd::Function<WkvFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& time_decay,
                               const torch::Tensor& time_first, const torch::Tensor& k, const torch::Tensor& v,
                               const std::optional<torch::Tensor>& aa0_in, const std::optional<torch::Tensor>& bb0_in,
                               const std::optional<torch::Tensor>& pp0_in) {
    // Optional rather than undefined tensors: autograd reads the device of every tensor input.
    const torch::Tensor aa0 = aa0_in.value_or(torch::Tensor()), bb0 = bb0_in.value_or(torch::Tensor()),
                        pp0 = pp0_in.value_or(torch::Tensor());
    const auto acc = kernels::wkv_acc_dtype(k.scalar_type());
    // The kernels take both parameters in one dtype: time_decay's.
    const torch::Tensor td = time_decay.contiguous(), tf = time_first.to(time_decay.scalar_type()).contiguous();
    const torch::Tensor kc = k.contiguous(), vc = v.contiguous();
    const auto state_in = [&](const torch::Tensor& t) { return t.defined() ? t.to(acc).contiguous() : t; };
    const torch::Tensor s_aa = state_in(aa0), s_bb = state_in(bb0), s_pp = state_in(pp0);
    const auto state_out = [&] { return torch::empty({kc.size(0), kc.size(2)}, kc.options().dtype(acc)); };
    kernels::WkvForwardArgs a{td, tf, kc, vc, s_aa, s_bb, s_pp, state_out(), state_out(), state_out(), torch::empty_like(kc)};
    kernels::wkv_forward(a);
    ctx->save_for_backward({td, tf, kc, vc, s_aa, s_bb, s_pp});
    ctx->saved_data["dtypes"] = std::vector<int64_t>{
        static_cast<int64_t>(time_first.scalar_type()), static_cast<int64_t>(aa0.defined() ? aa0.scalar_type() : acc),
        static_cast<int64_t>(bb0.defined() ? bb0.scalar_type() : acc),
        static_cast<int64_t>(pp0.defined() ? pp0.scalar_type() : acc)};
    ctx->mark_non_differentiable({a.pp});
    // An unused final state gets no zero-filled gradient: the kernels take its absence as zeros.
    ctx->set_materialize_grads(false);
    return {a.y, a.aa, a.bb, a.pp};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    kernels::WkvBackwardArgs a;
    a.time_decay = saved[0];
    a.time_first = saved[1];
    a.k = saved[2];
    a.v = saved[3];
    a.aa0 = saved[4];
    a.bb0 = saved[5];
    a.pp0 = saved[6];
    const auto acc = kernels::wkv_acc_dtype(a.k.scalar_type());
    const auto state_shape = std::vector<int64_t>{a.k.size(0), a.k.size(2)};
    a.gy = grads[0].defined() ? grads[0].to(a.k.scalar_type()).contiguous() : torch::zeros_like(a.k);
    if (grads[1].defined() || grads[2].defined()) {
      const auto state_grad = [&](const torch::Tensor& g) {
        return g.defined() ? g.to(acc).contiguous() : torch::zeros(state_shape, a.k.options().dtype(acc));
      };
      a.g_aa_T = state_grad(grads[1]);
      a.g_bb_T = state_grad(grads[2]);
    }
    a.gk = torch::empty_like(a.k);
    a.gv = torch::empty_like(a.v);
    a.g_decay = torch::empty_like(a.time_decay);
    a.g_first = torch::empty_like(a.time_first);
    if (a.aa0.defined()) {
      a.g_aa0 = torch::empty_like(a.aa0);
      a.g_bb0 = torch::empty_like(a.aa0);
      a.g_pp0 = torch::empty_like(a.aa0);
    }
    kernels::wkv_backward(a);

    const auto dtypes = ctx->saved_data["dtypes"].toIntVector();
    const auto as = [&](const torch::Tensor& t, size_t i) {
      return t.defined() ? t.to(static_cast<torch::ScalarType>(dtypes[i])) : t;
    };
    return {a.g_decay, as(a.g_first, 0), a.gk, a.gv, as(a.g_aa0, 1), as(a.g_bb0, 2), as(a.g_pp0, 3)};
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
  // Without a state: none passed, the kernels start from the empty one.
  const auto part = [&](const torch::Tensor WkvState::*m) {
    return state ? std::optional<torch::Tensor>((*state).*m) : std::nullopt;
  };
  const auto out = WkvFunction::apply(time_decay, time_first, k, v, part(&WkvState::aa), part(&WkvState::bb),
                                      part(&WkvState::pp));
  return WkvOutput{out[0], WkvState{out[1], out[2], out[3]}};
}

}  // namespace rwkv
