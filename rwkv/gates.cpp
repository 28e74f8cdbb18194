#include "rwkv/gates.h"

#include "kernels/gates_op.h"

namespace rwkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SigmoidGateFunction : public torch::autograd::Function<SigmoidGateFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& r, const torch::Tensor& y) {
    kernels::GateForwardArgs a{r.contiguous(), y.contiguous(), torch::Tensor()};
    a.out = torch::empty(a.r.sizes(), a.r.options().dtype(kernels::gate_out_dtype(r.scalar_type(), y.scalar_type())));
    kernels::gate_forward(a);
    ctx->save_for_backward({a.r, a.y});
    return a.out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    kernels::GateBackwardArgs a{saved[0], saved[1], torch::Tensor(), torch::empty_like(saved[0]),
                                torch::empty_like(saved[1])};
    // The output's gradient in the output's dtype (autograd may hand another).
    a.gout = grads[0].to(kernels::gate_out_dtype(a.r.scalar_type(), a.y.scalar_type())).contiguous();
    kernels::gate_backward(a);
    return {a.gr, a.gy};
  }
};

class ReluSquareFunction : public torch::autograd::Function<ReluSquareFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& k) {
    kernels::ReluSquareForwardArgs a{k.contiguous(), torch::Tensor()};
    a.out = torch::empty_like(a.k);
    kernels::relu_square_forward(a);
    ctx->save_for_backward({a.k});
    return a.out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor k = ctx->get_saved_variables()[0];
    kernels::ReluSquareBackwardArgs a{k, grads[0].to(k.scalar_type()).contiguous(), torch::empty_like(k)};
    kernels::relu_square_backward(a);
    return {a.gk};
  }
};

}  // namespace

torch::Tensor sigmoid_gate(const torch::Tensor& r, const torch::Tensor& y) {
  TORCH_CHECK(r.defined() && y.defined(), "sigmoid_gate: r and y must be defined");
  TORCH_CHECK(r.sizes() == y.sizes(), "sigmoid_gate: r of shape ", r.sizes(), " and y of shape ", y.sizes(),
              " (no broadcasting)");
  return SigmoidGateFunction::apply(r, y);
}

torch::Tensor relu_square(const torch::Tensor& k) {
  TORCH_CHECK(k.defined(), "relu_square: k must be defined");
  return ReluSquareFunction::apply(k);
}

}  // namespace rwkv
