#pragma once
// Per-block activation checkpointing (Chen et al. 2016, "Training deep nets with sublinear
// memory cost"): the forward keeps only each block's input; the backward reruns that block's
// forward under autograd and differentiates it, one block at a time. Activation memory drops from
// L blocks' worth (26·D per token per block, trainer/dist/memory_plan.h) to L block inputs plus one
// block, for one extra forward pass (about a third more compute per step).
//
// LibTorch has no torch.utils.checkpoint: this is a custom autograd::Function around a block whose
// inputs are the block input, the incoming RNN state when a sequence continues, and the block's
// parameters (so the node is recorded even when x needs no gradient). Its backward recomputes the
// block and runs a nested backward through it, as torch.utils.checkpoint's reentrant mode does:
// the parameters' gradients are accumulated there, once each, with their hooks (the overlapped
// all-reduce of trainer/dist/grad_sync.h) seeing each gradient once. The recomputation is the same CPU arithmetic as the
// forward, so gradients equal the plain model's (tests/rwkv/test_block_recompute.cpp). RWKV-4 has no
// dropout and no random op, so no RNG state needs replaying; the autocast state (bf16 on CUDA) of
// the forward is replayed, since backward runs outside the training loop's autocast scope.
#include <torch/torch.h>

#include "rwkv/block.h"
#include "rwkv/model.h"

namespace rwkv {

// block(x, state) keeping only x (and the incoming state) for the backward. Without a state the
// sequence starts fresh; with one it continues from `state`, which is advanced past the last token
// as BlockImpl::forward does, and the gradient of the advanced state flows back into the incoming
// one (segmented training, trainer/train/segments.h).
torch::Tensor recompute_block(const Block& block, const torch::Tensor& x, LayerState* state = nullptr);

// model->forward(tokens[, state]) with every block wrapped by recompute_block. Under NoGradGuard
// it is the plain forward (nothing would be kept anyway).
torch::Tensor forward_recomputing_blocks(RWKVImpl& model, const torch::Tensor& tokens, RnnState* state = nullptr);

}  // namespace rwkv
