#pragma once
// Training on samples longer than fit at once (train.segment_len, trainer/README.md "Context
// beyond memory"). RWKV is an RNN: between two stretches of a sequence nothing but the RNN state
// passes — per block the token-shift inputs of att and ffn and the WKV triple (aa, bb, pp)
// (rwkv/block.h LayerState). So a sample of T tokens can be cut into segments that each continue
// from the previous one's end state, and the loss and its gradient are those of the whole sample.
//
// exact (backpropagation through time with checkpoints at the boundaries, Chen et al. 2016 over
// time instead of depth): a no-grad pass over the segments keeps only the state at each boundary;
// then the segments are walked in reverse, each recomputed under autograd from its saved start
// state, and backpropagated from its own loss plus the gradient that the later segments sent to
// its end state; the gradient reaching its start state goes on to the segment before. Activation
// memory is one segment's graph (plus S boundary states of 5·D numbers per block and row), for
// one extra forward pass. Equal to the unsegmented gradient up to fp32 rounding
// (tests/trainer/train/test_segments.cpp). pp carries no gradient: the state enters the next
// segment only through aa·e^pp and bb·e^pp (rwkv/wkv.h).
//
// truncated (RWKV-infctx-trainer's truncated BPTT): segments in order, each backpropagated at
// once with its start state detached, so no gradient crosses a boundary. No extra pass; a
// different gradient (the loss value is the same).
#include <torch/torch.h>

#include <functional>
#include <utility>
#include <vector>

#include "rwkv/model.h"
#include "trainer/config/run_config.h"

namespace rwkv::trainer {

// How a step runs the model.
struct StepForward {
  // tokens (B, T) int64 → logits (B, T, V), every row a fresh sequence.
  std::function<torch::Tensor(const torch::Tensor& tokens)> fresh;
  // The same continuing `state`, which is advanced past the last token (gradients flow through
  // it), and the state before any token: what segments need. Unset for a model without RNN state.
  std::function<torch::Tensor(const torch::Tensor& tokens, RnnState& state)> from_state;
  std::function<RnnState(int64_t batch)> initial_state;
};

// [begin, end) of the segments of a sample of ctx_len tokens cut every segment_len tokens (the
// last one shorter when segment_len does not divide ctx_len).
std::vector<std::pair<int64_t, int64_t>> segment_bounds(int64_t ctx_len, int64_t segment_len);

// One segment's loss as the step defines it (trainer/train/train_step.cpp): from the segment's
// logits (B, t, V), targets (B, t) and share t/T of the sample, the tensor to backpropagate and
// the loss value to report, both already weighted by the share.
struct SegmentLoss {
  torch::Tensor backprop;  // scalar
  torch::Tensor value;     // scalar, detached
};
using SegmentLossFn =
    std::function<SegmentLoss(const torch::Tensor& logits, const torch::Tensor& targets, double share)>;

struct SegmentCallbacks {
  std::function<void()> forward_done;          // exact: after the boundary pass; truncated: before the last backward
  std::function<void()> before_last_backward;  // the micro-batch's last backward call is next
  std::function<void()> after_backward;        // after every backward call
};

// Forward and backward of one micro-batch, inputs and targets (B, T) on the model's device, in
// segments of segment_len tokens (0 < segment_len < T), accumulating into the parameters'
// gradients (in the parameters' dtype: trainer/train/train_step.h).
// Returns the sum of the segments' loss values (the sample's loss), a 0-dim tensor on the device
// (not read: trainer/train/train_step.h reads once per step).
torch::Tensor segmented_forward_backward(const StepForward& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                  int64_t segment_len, SegmentGrad mode, const SegmentLossFn& loss_of,
                                  const SegmentCallbacks& callbacks = {});

}  // namespace rwkv::trainer
