#pragma once
// The token-shift mix kernels and their launch sites, one source for two builds: nvcc compiles it
// in kernels/token_mix_cuda.cu (declared by kernels/token_mix_cuda.h), g++ in
// kernels/token_mix_host.cpp through kernels/kernel_shim.h (declared by kernels/token_mix_host.h),
// where the tests run it on the CPU. The math is kernels/token_mix_math.h.
//
// One thread per (b, chunk of `chunk` tokens, c); consecutive threads take consecutive channels,
// so every load and store at a given t is coalesced. A thread keeps x_{t−1} in a register, so x is
// read once (plus one row per chunk), and every mix is written in the same pass. The backward
// carries g_j,t+1 the same way and writes ∂L/∂μ_j per (b, chunk, c); the caller sums those rows.
// No shared memory, barriers, warp intrinsics or atomics: threads are independent, which is what
// makes the host launch of kernels/host_cuda.h a correct execution.
#include "kernels/kernel_io.h"
#include "kernels/kernel_shim.h"
#include "kernels/token_mix_kernel_args.h"
#include "kernels/token_mix_math.h"

namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE {
namespace {

constexpr int kMixThreads = 256;

// What thread `idx` of a forward or backward launch takes: channel c of tokens [t0, t1) of batch
// row b (its chunk; `row` = b·chunks + chunk, the row of the ∂μ partial sums), `first` the offset
// of token t0, `xx` the input one token before t0 (the carried row at t = 0, or zero without
// one). valid is false past the grid's last chunk.
struct MixSlot {
  bool valid;
  int64_t b, c, row, t0, t1, first;
  float xx;
};
template <class X, class Args>
__device__ __forceinline__ MixSlot mix_slot(const Args& a, int64_t idx) {
  const int64_t chunks = (a.T + a.chunk - 1) / a.chunk;
  if (idx >= a.B * chunks * a.C) return MixSlot{false, 0, 0, 0, 0, 0, 0, 0.f};
  const int64_t c = idx % a.C, bj = idx / a.C, b = bj / chunks, j = bj % chunks;
  const int64_t t0 = j * a.chunk, t1 = t0 + a.chunk < a.T ? t0 + a.chunk : a.T;
  const X* x = static_cast<const X*>(a.x);
  const int64_t first = (b * a.T + t0) * a.C + c;
  const float xx =
      t0 > 0 ? load(x[first - a.C]) : (a.prev != nullptr ? load(static_cast<const X*>(a.prev)[b * a.C + c]) : 0.f);
  return MixSlot{true, b, c, bj, t0, t1, first, xx};
}

// μ_j of channel c as stored (fp32 or bf16), read once per thread.
__device__ __forceinline__ float mu_at(const void* mu, TokenMixParam param, int64_t c) {
  return param == TokenMixParam::bf16 ? load(static_cast<const __nv_bfloat16*>(mu)[c]) : static_cast<const float*>(mu)[c];
}

// X: the type of x, prev, gx, gprev; Y: the type of the mixes and their gradients.
template <class X, class Y, int kMixes>
__global__ void mix_forward_kernel(TokenMixCudaForward a) {
  const MixSlot slot = mix_slot<X>(a, static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (!slot.valid) return;
  const int64_t c = slot.c, t0 = slot.t0, t1 = slot.t1, first = slot.first;
  const X* __restrict__ x = static_cast<const X*>(a.x);
  float xx = slot.xx;
  float mu[kMixes];
  for (int m = 0; m < kMixes; ++m) mu[m] = mu_at(a.mu[m], a.param, c);
  for (int64_t t = t0, o = first; t < t1; ++t, o += a.C) {
    const float xt = load(x[o]);
    for (int m = 0; m < kMixes; ++m) static_cast<Y*>(a.out[m])[o] = store<Y>(token_mix::mix(xt, xx, mu[m]));
    xx = xt;
  }
}

template <class X, class Y, int kMixes>
__global__ void mix_backward_kernel(TokenMixCudaBackward a) {
  const MixSlot slot = mix_slot<X>(a, static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (!slot.valid) return;
  const int64_t b = slot.b, c = slot.c, t0 = slot.t0, t1 = slot.t1, first = slot.first;
  const X* __restrict__ x = static_cast<const X*>(a.x);
  X* __restrict__ gx = static_cast<X*>(a.gx);
  float xx = slot.xx;
  float mu[kMixes], g[kMixes], gmu[kMixes];
  for (int m = 0; m < kMixes; ++m) {
    mu[m] = mu_at(a.mu[m], a.param, c);
    g[m] = load(static_cast<const Y*>(a.gout[m])[first]);
    gmu[m] = 0.f;
  }
  if (t0 == 0 && a.gprev != nullptr) {
    float gp = 0.f;
    for (int m = 0; m < kMixes; ++m) gp += token_mix::grad_x(0.f, g[m], mu[m]);
    static_cast<X*>(a.gprev)[b * a.C + c] = store<X>(gp);
  }
  for (int64_t t = t0, o = first; t < t1; ++t, o += a.C) {
    const float xt = load(x[o]);
    float gxt = 0.f;
    for (int m = 0; m < kMixes; ++m) {
      const float g_next = t + 1 < a.T ? load(static_cast<const Y*>(a.gout[m])[o + a.C]) : 0.f;
      gxt += token_mix::grad_x(g[m], g_next, mu[m]);
      gmu[m] += token_mix::grad_mu(g[m], xt, xx);
      g[m] = g_next;
    }
    gx[o] = store<X>(gxt);
    xx = xt;
  }
  for (int m = 0; m < kMixes; ++m) a.gmu_partial[m][slot.row * a.C + c] = gmu[m];
}

unsigned mix_blocks(int64_t B, int64_t T, int64_t C, int64_t chunk) {
  return static_cast<unsigned>((B * ((T + chunk - 1) / chunk) * C + kMixThreads - 1) / kMixThreads);
}

template <class X, class Y, int kMixes>
void launch_forward(const TokenMixCudaForward& a, cudaStream_t stream) {
  RWKV_LAUNCH(mix_blocks(a.B, a.T, a.C, a.chunk), kMixThreads, stream, mix_forward_kernel<X, Y, kMixes>)(a);
}

template <class X, class Y, int kMixes>
void launch_backward(const TokenMixCudaBackward& a, cudaStream_t stream) {
  RWKV_LAUNCH(mix_blocks(a.B, a.T, a.C, a.chunk), kMixThreads, stream, mix_backward_kernel<X, Y, kMixes>)(a);
}

// The instantiation for (io, mixes); `Args` is the forward or backward struct, whose `mixes` the
// caller has checked to be 1 … kMaxMixes (kernels/token_mix_op.cpp).
template <template <class, class, int> class Launcher, class Args>
cudaError_t dispatch(TokenMixIo io, const Args& a, cudaStream_t stream) {
  const auto by_mixes = [&](auto x_tag, auto y_tag) {
    using X = decltype(x_tag);
    using Y = decltype(y_tag);
    if (a.mixes == 1) Launcher<X, Y, 1>::run(a, stream);
    else if (a.mixes == 2) Launcher<X, Y, 2>::run(a, stream);
    else Launcher<X, Y, 3>::run(a, stream);
  };
  switch (io) {
    case TokenMixIo::f32: by_mixes(float{}, float{}); break;
    case TokenMixIo::f32_bf16: by_mixes(float{}, __nv_bfloat16{}); break;
    case TokenMixIo::bf16: by_mixes(__nv_bfloat16{}, __nv_bfloat16{}); break;
  }
  return cudaGetLastError();
}

template <class X, class Y, int kMixes>
struct ForwardLauncher {
  static void run(const TokenMixCudaForward& a, cudaStream_t stream) { launch_forward<X, Y, kMixes>(a, stream); }
};
template <class X, class Y, int kMixes>
struct BackwardLauncher {
  static void run(const TokenMixCudaBackward& a, cudaStream_t stream) { launch_backward<X, Y, kMixes>(a, stream); }
};

}  // namespace

cudaError_t token_mix_forward(TokenMixIo io, const TokenMixCudaForward& args, cudaStream_t stream) {
  return dispatch<ForwardLauncher>(io, args, stream);
}

cudaError_t token_mix_backward(TokenMixIo io, const TokenMixCudaBackward& args, cudaStream_t stream) {
  return dispatch<BackwardLauncher>(io, args, stream);
}

}  // namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE
