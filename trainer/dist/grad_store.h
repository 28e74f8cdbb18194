#pragma once
// Where a step's gradients collect, in fp32, whatever dtype the parameters train in (issue 14,
// mixed precision as the reference trains: bf16 weights in the module, fp32 master weights, Adam
// and gradient accumulation in the optimizer — DeepSpeed's bf16 optimizer in RWKV-LM).
//
//   Mode::autograd  fp32 parameters, ZeRO stage 0/1: autograd's .grad is the store; it adds a
//                   micro-batch's gradient to the previous ones in fp32 already.
//   Mode::fp32      bf16 parameters, ZeRO stage 0/1: a post-accumulate hook on each parameter moves
//                   the gradient autograd has just produced into an fp32 tensor of the store and
//                   drops the bf16 .grad, so micro-batches add up in fp32 and no bf16 gradient
//                   outlives its arrival.
//   Mode::stream    ZeRO-2, any dtype: nothing is kept here; each arriving gradient goes to the
//                   listener (the reduce-scatter buckets, trainer/dist/parallel_optimizer.cpp)
//                   and is dropped, so the gradients never exist whole.
// The listener, when set, sees each gradient as it arrives, before it is added to the store (so
// get() still returns the earlier sum): a .grad hook in autograd mode, the post-accumulate hook
// otherwise. Hooks may run on autograd's device thread.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace rwkv {

class GradStore {
 public:
  enum class Mode { autograd, fp32, stream };
  using Listener = std::function<void(size_t param, const torch::Tensor& incoming)>;

  // `params`: leaves in a fixed order. Hooks go on those that require a gradient.
  GradStore(std::vector<torch::Tensor> params, Mode mode);
  ~GradStore();  // removes the hooks: the parameters outlive this object
  GradStore(const GradStore&) = delete;
  GradStore& operator=(const GradStore&) = delete;

  Mode mode() const { return mode_; }
  size_t size() const { return params_.size(); }
  const torch::Tensor& param(size_t i) const { return params_[i]; }
  // Called for every arriving gradient from now on (one listener; setting another replaces it).
  void listen(Listener listener);

  // The fp32 sum of parameter i's gradients since the last drop(); undefined when none arrived
  // (and always in stream mode).
  torch::Tensor get(size_t i) const;
  // Replaces it (an averaged result); `g` fp32, of the parameter's shape.
  void set(size_t i, const torch::Tensor& g);
  // The defined gradients, in parameter order.
  std::vector<torch::Tensor> defined() const;
  // Forgets every gradient.
  void drop();

 private:
  void arrived(size_t i, const torch::Tensor& incoming);  // the post-accumulate hook's work

  std::vector<torch::Tensor> params_;
  Mode mode_;
  std::vector<torch::Tensor> fp32_;  // Mode::fp32: the sums
  Listener listener_;
  std::vector<unsigned> grad_hooks_;  // Mode::autograd with a listener: per parameter (~0u: none)
};

}  // namespace rwkv
