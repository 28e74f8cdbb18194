#pragma once
// Adam with per-parameter learning-rate multipliers and optional decoupled weight decay on
// weight matrices (trainer/README.md "Optimizer and schedule": betas (0.9, 0.99), eps 1e-8, time_decay 2×, time_first 3×), and
// global-norm gradient clipping.
//
// Our own Adam rather than torch::optim::Adam/AdamW: its state is a plain map from the model's
// parameter name to fp32 moments, which is what a checkpoint stores and reloads by name
// (torch::optim keys state by TensorImpl pointer and parameter order), the multipliers can change
// between stages without rebuilding groups, and one step count serves every parameter because a
// skipped step (non-finite gradient) skips them all. The update is torch's Adam formula (on CPU
// one fused pass per tensor, kernels/adam_cpu.h; on CUDA LibTorch's multi-tensor fused AdamW, one
// pass over all tensors of a learning-rate group; the same fp32 arithmetic up to rounding):
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p·(1 − lr·wd) − lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps)
#include <torch/torch.h>

#include <string>
#include <vector>

#include "rwkv/named_tensors.h"
#include "trainer/optim/adam_config.h"
#include "trainer/optim/lr_mult.h"

namespace rwkv::trainer {

class Adam {
 public:
  // `params`: the named fp32 master weights (the model's parameters when it trains in fp32);
  // moments are created as zeros.
  Adam(NamedTensors params, const AdamConfig& config);

  // One update at base learning rate `lr`, multipliers `mult`, from `grads` (fp32, one per
  // parameter in order; an undefined one leaves its parameter and moments as they are) scaled by
  // `grad_scale` (the clip coefficient: see adam_update_all).
  void step(double lr, const LrMult& mult, const std::vector<torch::Tensor>& grads, double grad_scale = 1.0);
  int64_t steps() const { return steps_; }

  // State for checkpoints: "exp_avg.<name>" and "exp_avg_sq.<name>" plus the step count.
  NamedTensors state() const;
  // Restores what state() returned; throws std::runtime_error naming a missing or misshapen entry.
  void load_state(const NamedTensors& state, int64_t steps);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, exp_avg, exp_avg_sq;
    bool decay;  // 2-D weight matrix: gets weight decay
  };
  std::vector<Slot> slots_;
  AdamConfig config_;
  int64_t steps_ = 0;
};

// The update of one tensor (or a contiguous piece of one: ZeRO shards) at step `t`, learning
// rate `plr` (multiplier applied), with weight decay when `decay`, from grad·grad_scale; all four
// tensors alike. The result equals scaling the gradient by grad_scale first and updating with
// grad_scale 1, bit for bit on the CPU (the scaled gradient is rounded to fp32 first).
void adam_update(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq,
                 double plr, bool decay, int64_t t, const AdamConfig& config, double grad_scale = 1.0);

// Tensors that share one learning rate and decay flag, updated by one multi-tensor pass.
struct AdamGroup {
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
};
// The update of a group at step `t` through LibTorch's fused AdamW (at::_fused_adamw_: on CUDA a
// few launches for the whole group instead of seven kernels and three temporaries per tensor, issue
// 18; it runs on the CPU too, where the tests compare it with adam_update). Every tensor fp32 on
// one device.
void adam_update_group(AdamGroup& group, double plr, bool decay, int64_t t, const AdamConfig& config);

// One tensor's update as adam_update takes it.
struct AdamItem {
  torch::Tensor param, grad, exp_avg, exp_avg_sq;
  double plr;
  bool decay;
};
// The updates of many tensors (or pieces of them) at step `t` from their gradients scaled by
// `grad_scale` (the clip coefficient, issue 18: on the CPU the scaling is part of Adam's one pass
// instead of a pass of its own that reads and writes every gradient; on CUDA one multi-tensor
// scaling of the gradients, in place): on CUDA grouped by (plr, decay) into multi-tensor passes
// (adam_update_group: a few launches per step, not one or seven per tensor), elsewhere one
// adam_update each.
void adam_update_all(const std::vector<AdamItem>& items, int64_t t, const AdamConfig& config,
                     double grad_scale = 1.0);

// The global L2 norm of `grads` (defined tensors), a 0-dim fp64 tensor on `device`, not read to
// the host (the training step reads it with the loss, trainer/train/train_step.h); +inf/NaN when
// any gradient is non-finite, 0 when there is none.
torch::Tensor global_grad_norm(const std::vector<torch::Tensor>& grads, const torch::Device& device);
// max_norm/(norm + 1e-6) when norm > max_norm, else 1 (torch's clip_grad_norm_; 0 disables). The
// optimizers fold it into their update (grad_scale) instead of scaling the gradients first.
double clip_coefficient(double norm, double max_norm);

}  // namespace rwkv::trainer
