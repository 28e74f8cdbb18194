#pragma once
// The cross-entropy + L2Wrap CUDA kernels and their launch sites, one source for two builds: nvcc
// compiles it in kernels/cross_entropy_cuda.cu (declared by kernels/cross_entropy_cuda.h), g++ in
// kernels/cross_entropy_host.cpp through kernels/kernel_shim.h (declared by
// kernels/cross_entropy_host.h), where the tests run it on the CPU. The math is
// kernels/cross_entropy_math.h.
//
// Forward in two launches, so that no thread needs another's result within a launch (no shared
// memory, barriers, warp intrinsics or atomics: what makes the host launch of kernels/host_cuda.h
// a correct execution): kXentSlices threads per row each keep a running softmax over every
// kXentSlices-th logit (a warp reads 32 consecutive logits per step), then one thread per row
// merges them in slice order and writes lse, max, arg-max and the row's loss. Backward: one
// thread per logit writes its gradient once, the arg-max's L2Wrap term included.
#include <limits>

#include "kernels/cross_entropy_kernel_args.h"
#include "kernels/cross_entropy_math.h"
#include "kernels/kernel_io.h"
#include "kernels/kernel_shim.h"

namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE {
namespace {

constexpr int kXentThreads = 256;

unsigned xent_blocks(int64_t threads) { return static_cast<unsigned>((threads + kXentThreads - 1) / kXentThreads); }

template <class IO>
__global__ void xent_slice_kernel(XentForward a) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.rows * kXentSlices) return;
  const int64_t row = idx / kXentSlices, slice = idx % kXentSlices;
  const IO* __restrict__ x = static_cast<const IO*>(a.logits) + row * a.vocab;
  xent::Softmax<float> s = xent::empty<float>();
  for (int64_t v = slice; v < a.vocab; v += kXentSlices) xent::push(s, load(x[v]), v);
  a.slice_max[idx] = s.max;
  a.slice_sum[idx] = s.sum;
  a.slice_index[idx] = s.index;
}

template <class IO>
__global__ void xent_row_kernel(XentForward a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= a.rows) return;
  xent::Softmax<float> s = xent::empty<float>();
  for (int64_t j = 0, i = row * kXentSlices; j < kXentSlices; ++j, ++i)
    s = xent::merge(s, xent::Softmax<float>{a.slice_max[i], a.slice_sum[i], a.slice_index[i]});
  const float lse = xent::log_sum_exp(s.max, s.sum);
  const int64_t t = a.targets[row];
  a.lse[row] = lse;
  a.max_value[row] = s.max;
  a.argmax[row] = s.index;
  // No device-side assert: a target outside the vocabulary makes the loss NaN, which the step's
  // non-finite guard refuses (the CPU op throws instead).
  a.row_loss[row] = t >= 0 && t < a.vocab ? lse - load(static_cast<const IO*>(a.logits)[row * a.vocab + t])
                                          : std::numeric_limits<float>::quiet_NaN();
}

template <class IO>
__global__ void xent_backward_kernel(XentBackward a) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.rows * a.vocab) return;
  const int64_t row = idx / a.vocab, v = idx % a.vocab;
  const float scale = a.grad_loss[0] / static_cast<float>(a.rows);
  const float extra = xent::gradient_extra(v, a.targets[row], a.argmax[row], a.factor * a.max_value[row]);
  static_cast<IO*>(a.grad_logits)[idx] =
      store<IO>(xent::gradient(load(static_cast<const IO*>(a.logits)[idx]), a.lse[row], extra, scale));
}

}  // namespace

cudaError_t xent_forward(XentIo io, const XentForward& args, cudaStream_t stream) {
  if (io == XentIo::bf16) {
    RWKV_LAUNCH(xent_blocks(args.rows * kXentSlices), kXentThreads, stream, xent_slice_kernel<__nv_bfloat16>)(args);
    RWKV_LAUNCH(xent_blocks(args.rows), kXentThreads, stream, xent_row_kernel<__nv_bfloat16>)(args);
  } else {
    RWKV_LAUNCH(xent_blocks(args.rows * kXentSlices), kXentThreads, stream, xent_slice_kernel<float>)(args);
    RWKV_LAUNCH(xent_blocks(args.rows), kXentThreads, stream, xent_row_kernel<float>)(args);
  }
  return cudaGetLastError();
}

cudaError_t xent_backward(XentIo io, const XentBackward& args, cudaStream_t stream) {
  const unsigned blocks = xent_blocks(args.rows * args.vocab);
  if (io == XentIo::bf16)
    RWKV_LAUNCH(blocks, kXentThreads, stream, xent_backward_kernel<__nv_bfloat16>)(args);
  else
    RWKV_LAUNCH(blocks, kXentThreads, stream, xent_backward_kernel<float>)(args);
  return cudaGetLastError();
}

}  // namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE
