#include "trainer/train/cross_entropy_l2wrap.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>

#include "kernels/cross_entropy_op.h"

namespace rwkv::trainer {
namespace {

class CrossEntropyL2Wrap : public torch::autograd::Function<CrossEntropyL2Wrap> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& targets, double factor) {
    const int64_t V = logits.size(-1);
    const auto rows = logits.reshape({-1, V}).contiguous();
    const auto flat_targets = targets.reshape({-1}).contiguous();
    auto r = kernels::cross_entropy_forward(rows, flat_targets);
    ctx->save_for_backward({rows, flat_targets, r.rows.lse, r.rows.max, r.rows.argmax});
    ctx->saved_data["factor"] = factor;
    ctx->saved_data["sizes"] = logits.sizes().vec();
    return r.loss;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& rows = saved[0];
    const kernels::XentRows stats{saved[2], saved[3], saved[4]};
    const auto grad_loss = grad_outputs[0].to(stats.lse.scalar_type());
    const auto grad = kernels::cross_entropy_backward(rows, saved[1], stats, grad_loss,
                                                      ctx->saved_data["factor"].toDouble());
    return {grad.view(ctx->saved_data["sizes"].toIntVector()), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor cross_entropy_l2wrap(const torch::Tensor& logits, const torch::Tensor& targets, double factor) {
  if (logits.dim() < 1 || targets.sizes() != logits.sizes().slice(0, logits.dim() - 1))
    throw std::invalid_argument(fmt::format("cross_entropy_l2wrap: targets of shape [{}] do not match logits [{}]",
                                            fmt::join(targets.sizes(), ", "), fmt::join(logits.sizes(), ", ")));
  return CrossEntropyL2Wrap::apply(logits, targets.to(torch::kLong), factor);
}

}  // namespace rwkv::trainer
