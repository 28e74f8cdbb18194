#pragma once
// The arguments of the cross-entropy kernels (kernels/cross_entropy_kernels.cuh), free of CUDA and
// torch headers so that the CUDA build (kernels/cross_entropy_cuda.h) and the host build
// (kernels/cross_entropy_host.h) share them.
#include <cstdint>

namespace rwkv::kernels {

// Element type of the logits and their gradient; everything else is fp32 (indices int64).
enum class XentIo { f32, bf16 };

// Threads per row in the forward's first pass: thread s of a row takes the entries v ≡ s (mod
// kXentSlices), so at every step a warp reads 32 consecutive logits.
inline constexpr int64_t kXentSlices = 32;

// All arrays contiguous on one device. logits (rows, vocab); per row: targets, lse, max_value,
// argmax, row_loss; slice_* (rows, kXentSlices): the first pass's partial softmaxes.
struct XentForward {
  int64_t rows, vocab;
  const void* logits;
  const int64_t* targets;
  float* slice_max;
  float* slice_sum;
  int64_t* slice_index;
  float* lse;
  float* max_value;
  int64_t* argmax;
  float* row_loss;  // lse − x_target; NaN where the target is outside [0, vocab)
};

struct XentBackward {
  int64_t rows, vocab;
  const void* logits;
  const int64_t* targets;
  const float* lse;
  const float* max_value;
  const int64_t* argmax;
  const float* grad_loss;  // one number on the device: ∂L/∂(mean loss), read there (no host sync)
  float factor;            // L2Wrap's (0: plain cross-entropy)
  void* grad_logits;       // (rows, vocab), the logits' type
};

}  // namespace rwkv::kernels
