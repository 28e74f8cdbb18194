#include "trainer/train/l2wrap.h"

namespace rwkv::trainer {
namespace {

class L2Wrap : public torch::autograd::Function<L2Wrap> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& loss,
                               const torch::Tensor& logits, double factor) {
    const auto [max_values, max_index] = logits.detach().max(-1, /*keepdim=*/true);
    const double positions = static_cast<double>(logits.numel() / logits.size(-1));
    ctx->save_for_backward({max_values, max_index});
    ctx->saved_data["scale"] = factor / positions;
    ctx->saved_data["sizes"] = logits.sizes().vec();
    return loss.clone();
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& max_values = saved[0];
    const auto& max_index = saved[1];
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    const auto& grad_loss = grad_outputs[0];
    auto grad_logits = torch::zeros(sizes, max_values.options());
    grad_logits.scatter_(-1, max_index, max_values * (grad_loss.to(max_values.scalar_type()) * scale));
    return {grad_loss, grad_logits, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor l2wrap(const torch::Tensor& loss, const torch::Tensor& logits, double factor) {
  return L2Wrap::apply(loss, logits, factor);
}

}  // namespace rwkv::trainer
