#include "rwkv/block_recompute.h"

#include <ATen/autocast_mode.h>

namespace rwkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The block travels through the autograd context as a capsule (the context stores IValues).
struct BlockHandle : torch::CustomClassHolder {
  explicit BlockHandle(Block b) : block(std::move(b)) {}
  Block block;
};

// Sets CUDA autocast to the forward's state for the recomputation and restores it after; the cast
// cache is cleared when autocast was on, as the loop's own scope does (trainer/train/train_loop.cpp).
class AutocastReplay {
 public:
  AutocastReplay(bool enabled, at::ScalarType dtype)
      : prev_enabled_(at::autocast::is_autocast_enabled(at::kCUDA)),
        prev_dtype_(at::autocast::get_autocast_dtype(at::kCUDA)),
        enabled_(enabled) {
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, enabled);
  }
  ~AutocastReplay() {
    at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
    if (enabled_) at::autocast::clear_cache();
  }

 private:
  bool prev_enabled_;
  at::ScalarType prev_dtype_;
  bool enabled_;
};

struct RecomputedBlock : torch::autograd::Function<RecomputedBlock> {
  // `params` are the block's parameters: inputs of the node, so their gradients leave through it.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, torch::TensorList params,
                               const c10::intrusive_ptr<BlockHandle>& handle) {
    (void)params;
    ctx->save_for_backward({x});
    ctx->saved_data["block"] = c10::IValue::make_capsule(handle);
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(at::kCUDA);
    ctx->saved_data["autocast_dtype"] = at::autocast::get_autocast_dtype(at::kCUDA);
    // A custom Function's forward runs with grad mode off: the block's intermediates are freed.
    return handle->block->forward(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const auto capsule = ctx->saved_data["block"].toCapsule();
    Block& block = static_cast<BlockHandle*>(capsule.get())->block;
    const torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    variable_list inputs{x};
    for (const auto& p : block->parameters()) inputs.push_back(p);

    torch::Tensor y;
    {
      AutocastReplay autocast(ctx->saved_data["autocast"].toBool(), ctx->saved_data["autocast_dtype"].toScalarType());
      torch::AutoGradMode grad_on(true);
      y = block->forward(x);
    }
    variable_list grads = torch::autograd::grad({y}, inputs, {grad_out[0]}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true);
    grads.emplace_back();  // the handle: not differentiable
    return grads;
  }
};

}  // namespace

torch::Tensor recompute_block(const Block& block, const torch::Tensor& x) {
  // As a TensorList, each parameter becomes an input of the node (a std::vector would be passed
  // through as one opaque argument).
  const std::vector<torch::Tensor> params = block->parameters();
  return RecomputedBlock::apply(x, torch::TensorList(params), c10::make_intrusive<BlockHandle>(block));
}

torch::Tensor forward_recomputing_blocks(RWKVImpl& model, const torch::Tensor& tokens) {
  if (!torch::GradMode::is_enabled()) return model.forward(tokens);
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) > 0, "tokens must be (B, T) with T >= 1, got ", tokens.sizes());
  torch::Tensor x = model.emb(tokens);
  for (int64_t l = 0; l < model.config().n_layer; ++l) x = recompute_block(model.block(l), x);
  return model.head(model.ln_out(x));
}

}  // namespace rwkv
