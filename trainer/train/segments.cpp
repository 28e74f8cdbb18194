#include "trainer/train/segments.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>


namespace rwkv::trainer {
namespace {

// The tensors of a state that carry gradient across a boundary, per block: att and ffn token-shift
// inputs, aa, bb (pp does not, segments.h).
std::vector<torch::Tensor> differentiable(const RnnState& state) {
  std::vector<torch::Tensor> out;
  out.reserve(state.size() * 4);
  for (const auto& layer : state) {
    out.push_back(layer.att.prev_x);
    out.push_back(layer.att.wkv.aa);
    out.push_back(layer.att.wkv.bb);
    out.push_back(layer.ffn.prev_x);
  }
  return out;
}

// A copy owning its memory and outside any graph: a token-shift input can be a view into the
// whole segment's activations (a row of x when B = 1), which must not stay alive with the boundary.
RnnState detached_copy(const RnnState& state) {
  RnnState out = state;
  for (auto& layer : out) {
    layer.att.prev_x = layer.att.prev_x.detach().clone();
    layer.att.wkv = WkvState{layer.att.wkv.aa.detach().clone(), layer.att.wkv.bb.detach().clone(),
                             layer.att.wkv.pp.detach().clone()};
    layer.ffn.prev_x = layer.ffn.prev_x.detach().clone();
  }
  return out;
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> segment_bounds(int64_t ctx_len, int64_t segment_len) {
  if (ctx_len < 1 || segment_len < 1)
    throw std::invalid_argument(fmt::format("segments: ctx_len {} and segment_len {} must be positive", ctx_len,
                                            segment_len));
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t begin = 0; begin < ctx_len; begin += segment_len)
    out.emplace_back(begin, std::min(ctx_len, begin + segment_len));
  return out;
}

torch::Tensor segmented_forward_backward(const StepForward& model, const torch::Tensor& inputs,
                                         const torch::Tensor& targets, int64_t segment_len, SegmentGrad mode,
                                         const SegmentLossFn& loss_of, const SegmentCallbacks& callbacks) {
  if (!model.from_state || !model.initial_state)
    throw std::invalid_argument("train.segment_len: this model carries no RNN state, so it cannot run in segments");
  const int64_t T = inputs.size(1);
  const auto bounds = segment_bounds(T, segment_len);
  const size_t S = bounds.size();
  const auto piece = [&](const torch::Tensor& t, size_t s) {
    return t.narrow(1, bounds[s].first, bounds[s].second - bounds[s].first);
  };
  const auto share = [&](size_t s) { return static_cast<double>(bounds[s].second - bounds[s].first) / T; };
  const auto notify = [](const std::function<void()>& f) {
    if (f) f();
  };
  const auto segment_loss = [&](size_t s, RnnState& state) {
    return loss_of(model.from_state(piece(inputs, s), state), piece(targets, s), share(s));
  };
  torch::Tensor loss;  // the sum of the segments' values, on the device
  const auto add = [&](const torch::Tensor& value) { loss = loss.defined() ? loss + value : value; };

  if (mode == SegmentGrad::truncated) {
    RnnState state = model.initial_state(inputs.size(0));
    for (size_t s = 0; s < S; ++s) {
      state = detached_copy(state);  // the cut: nothing flows back into the previous segment
      const SegmentLoss l = segment_loss(s, state);
      if (s + 1 == S) {
        notify(callbacks.forward_done);
        notify(callbacks.before_last_backward);
      }
      l.backprop.backward();
      notify(callbacks.after_backward);
      add(l.value);
    }
    return loss;
  }

  // The boundary pass: the state at the start of every segment, nothing else kept.
  std::vector<RnnState> starts{model.initial_state(inputs.size(0))};
  {
    torch::NoGradGuard no_grad;
    RnnState state = starts.front();
    for (size_t s = 0; s + 1 < S; ++s) {
      model.from_state(piece(inputs, s), state);
      starts.push_back(detached_copy(state));
    }
  }
  notify(callbacks.forward_done);

  // In reverse: recompute a segment from its start, backpropagate its loss together with the
  // gradient the later segments sent to its end state, and pass on what reaches its start.
  std::vector<torch::Tensor> end_grads;  // empty for the last segment
  for (size_t s = S; s-- > 0;) {
    RnnState state = starts[s];
    std::vector<torch::Tensor> start_leaves;
    if (s > 0) {
      for (auto& t : differentiable(state)) start_leaves.push_back(t.requires_grad_(true));
    }
    const SegmentLoss l = segment_loss(s, state);
    std::vector<torch::Tensor> roots{l.backprop}, grads{torch::ones_like(l.backprop)};
    const auto ends = differentiable(state);
    for (size_t i = 0; i < end_grads.size(); ++i) {
      if (!end_grads[i].defined() || !ends[i].requires_grad()) continue;
      roots.push_back(ends[i]);
      grads.push_back(end_grads[i]);
    }
    if (s == 0) notify(callbacks.before_last_backward);
    torch::autograd::backward(roots, grads);
    notify(callbacks.after_backward);
    add(l.value);
    end_grads.clear();
    for (auto& leaf : start_leaves) end_grads.push_back(leaf.grad());
    starts[s] = RnnState();
  }
  return loss;
}

}  // namespace rwkv::trainer
