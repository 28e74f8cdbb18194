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
// A store may keep a parameter's sum in memory it is given (home(): a part of a bucket, so the
// all-reduce works on the gradients themselves and no second whole gradient exists, as DDP's
// gradient_as_bucket_view): the first gradient after drop() is copied there, the later ones are
// added in place (by autograd itself for fp32 parameters).
// The listener, when set, is called once a gradient has arrived, from the post-accumulate hook
// (possibly on autograd's device thread): in stream mode with that gradient, which is dropped
// afterwards; otherwise after the store has added it, with the sum (get()).
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
  // Parameter i's sums live in `slot` from now on (fp32, contiguous, as many elements as the
  // parameter; not in stream mode).
  void home(size_t i, torch::Tensor slot);
  // Parameter i's sum moved into its home, where it was not (set by hand): copied there, or zeros
  // where no gradient arrived. Afterwards get(i) is a view of the home.
  void settle(size_t i);

  // The fp32 sum of parameter i's gradients since the last drop(); undefined when none arrived
  // (and always in stream mode).
  torch::Tensor get(size_t i) const;
  // The defined gradients, in parameter order.
  std::vector<torch::Tensor> defined() const;
  // Forgets every gradient.
  void drop();

 private:
  void hook();                                            // the hooks, once
  void arrived(size_t i, const torch::Tensor& incoming);  // the post-accumulate hook's work
  // Where parameter i's sum is kept: .grad (autograd mode) or the fp32 tensor (fp32 mode).
  torch::Tensor& sum(size_t i);

  std::vector<torch::Tensor> params_;
  Mode mode_;
  std::vector<torch::Tensor> fp32_;   // Mode::fp32: the sums
  std::vector<torch::Tensor> homes_;  // flat; undefined: none
  Listener listener_;
  std::vector<unsigned> pre_hooks_;  // per parameter (~0u: none) once hooked, else empty
  // Set when a gradient is on its way into .grad (the tensor hook saw one): the engine runs
  // AccumulateGrad, and with it the post-accumulate hook, for an undefined gradient too (block
  // recompute returns none for parameters its nested backward accumulated), which adds nothing.
  std::vector<char> coming_;
};

}  // namespace rwkv
