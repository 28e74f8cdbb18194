#include "rwkv/block_recompute.h"

#include <ATen/autocast_mode.h>

#include <vector>

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

// A layer's state as the 5 tensors the node takes and returns, in LayerState's order; pp (index 3)
// is not differentiable (rwkv/wkv.h).
constexpr size_t kStatePp = 3;
std::vector<torch::Tensor> unpack(const LayerState& s) {
  return {s.att.prev_x, s.att.wkv.aa, s.att.wkv.bb, s.att.wkv.pp, s.ffn.prev_x};
}
LayerState pack(const std::vector<torch::Tensor>& t) {
  LayerState s;
  s.att.prev_x = t[0];
  s.att.wkv = WkvState{t[1], t[2], t[3]};
  s.ffn.prev_x = t[4];
  return s;
}

struct RecomputedBlock : torch::autograd::Function<RecomputedBlock> {
  // Outputs: y, then (with a state) the advanced state's 5 tensors. `state` is empty for a fresh
  // sequence. `params` are the block's parameters: inputs of the node, so their gradients leave
  // through it.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, torch::TensorList state,
                               torch::TensorList params, const c10::intrusive_ptr<BlockHandle>& handle) {
    (void)params;
    variable_list saved{x};
    saved.insert(saved.end(), state.begin(), state.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["block"] = c10::IValue::make_capsule(handle);
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(at::kCUDA);
    ctx->saved_data["autocast_dtype"] = at::autocast::get_autocast_dtype(at::kCUDA);
    // A custom Function's forward runs with grad mode off: the block's intermediates are freed.
    if (state.empty()) return {handle->block->forward(x)};
    LayerState s = pack(state.vec());
    variable_list out{handle->block->forward(x, &s)};
    for (auto& t : unpack(s)) out.push_back(t);
    ctx->mark_non_differentiable({out[1 + kStatePp]});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const auto capsule = ctx->saved_data["block"].toCapsule();
    Block& block = static_cast<BlockHandle*>(capsule.get())->block;
    const auto saved = ctx->get_saved_variables();
    const bool stateful = saved.size() > 1;
    // Leaves to differentiate with respect to: x and the incoming state but pp.
    const torch::Tensor x = saved[0].detach().requires_grad_(true);
    std::vector<torch::Tensor> state_in;
    for (size_t i = 1; i < saved.size(); ++i) {
      state_in.push_back(saved[i].detach());
      if (i - 1 != kStatePp) state_in.back().requires_grad_(true);
    }

    variable_list outputs, grads;
    {
      AutocastReplay autocast(ctx->saved_data["autocast"].toBool(), ctx->saved_data["autocast_dtype"].toScalarType());
      torch::AutoGradMode grad_on(true);
      if (!stateful) {
        outputs = {block->forward(x)};
        grads = {grad_out[0]};
      } else {
        LayerState s = pack(state_in);
        outputs = {block->forward(x, &s)};
        grads = {grad_out[0]};
        const auto advanced = unpack(s);
        for (size_t i = 0; i < advanced.size(); ++i) {
          if (i == kStatePp) continue;
          outputs.push_back(advanced[i]);
          grads.push_back(grad_out[1 + i]);  // zeros where the caller did not use the output
        }
      }
    }
    // A nested backward, as torch.utils.checkpoint's reentrant mode: it accumulates into the
    // parameters' .grad itself, once, so their hooks (trainer/dist/grad_sync.h starts bucket
    // all-reduces from them) see each gradient once. autograd::grad with the parameters as inputs
    // would run their hooks on the captured gradient and again when this node returned it.
    torch::autograd::backward(outputs, grads);
    // In the node's input order: x, the 5 state tensors (pp: none), the parameters (already
    // accumulated: none), the handle.
    variable_list result{x.grad()};
    for (size_t i = 0; i < state_in.size(); ++i) result.push_back(i == kStatePp ? torch::Tensor() : state_in[i].grad());
    result.resize(result.size() + block->parameters().size());
    result.emplace_back();  // the handle: not differentiable
    return result;
  }
};

}  // namespace

torch::Tensor recompute_block(const Block& block, const torch::Tensor& x, LayerState* state) {
  // As a TensorList, each parameter becomes an input of the node (a std::vector would be passed
  // through as one opaque argument).
  const std::vector<torch::Tensor> params = block->parameters();
  const std::vector<torch::Tensor> state_in = state ? unpack(*state) : std::vector<torch::Tensor>{};
  const variable_list out = RecomputedBlock::apply(x, torch::TensorList(state_in), torch::TensorList(params),
                                                   c10::make_intrusive<BlockHandle>(block));
  if (state) *state = pack(variable_list(out.begin() + 1, out.end()));
  return out[0];
}

torch::Tensor forward_recomputing_blocks(RWKVImpl& model, const torch::Tensor& tokens, RnnState* state) {
  if (!torch::GradMode::is_enabled()) return state ? model.forward(tokens, *state) : model.forward(tokens);
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) > 0, "tokens must be (B, T) with T >= 1, got ", tokens.sizes());
  TORCH_CHECK(!state || static_cast<int64_t>(state->size()) == model.config().n_layer, "RNN state has ",
              state ? state->size() : 0, " layers, the model ", model.config().n_layer);
  torch::Tensor x = model.emb(tokens);
  for (int64_t l = 0; l < model.config().n_layer; ++l)
    x = recompute_block(model.block(l), x, state ? &(*state)[static_cast<size_t>(l)] : nullptr);
  return model.head(model.ln_out(x));
}

}  // namespace rwkv
