#pragma once
// bf16 compute on CUDA with the fp32 parameters as master weights (trainer/README.md "Optimizer and schedule"):
// while an AutocastScope(true) lives, autocast casts each matmul's inputs to bf16 and keeps
// LayerNorm, softmax/CE and the WKV state in fp32. The cast cache is cleared on exit, or the bf16
// copies would go stale after the optimizer step (LIBTORCH-NOTES). Used by the train loop and by
// `rwkv bench train`, so the benchmark times the step that training runs.
#include <ATen/autocast_mode.h>

namespace rwkv::trainer {

class AutocastScope {
 public:
  explicit AutocastScope(bool on) : on_(on) {
    if (!on_) return;
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  ~AutocastScope() {
    if (!on_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_;
};

}  // namespace rwkv::trainer
