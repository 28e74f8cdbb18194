#pragma once
// The gate and activation kernels and their launch sites, one source for two builds: nvcc compiles
// it in kernels/gates_cuda.cu (declared by kernels/gates_cuda.h), g++ in kernels/gates_host.cpp
// through kernels/kernel_shim.h (declared by kernels/gates_host.h), where the tests run it on the
// CPU. The math is kernels/gates_math.h.
//
// One thread per element, consecutive threads on consecutive elements, so every load and store is
// coalesced; each kernel reads its inputs once and writes each result once, in fp32 registers.
// No shared memory, barriers, warp intrinsics or atomics: threads are independent, which is what
// makes the host launch of kernels/host_cuda.h a correct execution.
#include "kernels/gates_kernel_args.h"
#include "kernels/gates_math.h"
#include "kernels/kernel_io.h"
#include "kernels/kernel_shim.h"

namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE {
namespace {

// The output type of σ(r)·y: bf16 only when both inputs are (torch's promotion of the product).
template <class R, class Y>
struct GateOut {
  using type = float;
};
template <>
struct GateOut<__nv_bfloat16, __nv_bfloat16> {
  using type = __nv_bfloat16;
};

__device__ __forceinline__ int64_t element_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

template <class R, class Y>
__global__ void gate_forward_kernel(GateCudaForward a) {
  const int64_t i = element_index();
  if (i >= a.n) return;
  using O = typename GateOut<R, Y>::type;
  const float r = load(static_cast<const R*>(a.r)[i]), y = load(static_cast<const Y*>(a.y)[i]);
  static_cast<O*>(a.out)[i] = store<O>(gates::gate(r, y));
}

template <class R, class Y>
__global__ void gate_backward_kernel(GateCudaBackward a) {
  const int64_t i = element_index();
  if (i >= a.n) return;
  using O = typename GateOut<R, Y>::type;
  const float r = load(static_cast<const R*>(a.r)[i]), y = load(static_cast<const Y*>(a.y)[i]);
  float gr, gy;
  gates::gate_backward(r, y, load(static_cast<const O*>(a.gout)[i]), gr, gy);
  static_cast<R*>(a.gr)[i] = store<R>(gr);
  static_cast<Y*>(a.gy)[i] = store<Y>(gy);
}

template <class K>
__global__ void relu_square_forward_kernel(ReluSquareCudaForward a) {
  const int64_t i = element_index();
  if (i >= a.n) return;
  static_cast<K*>(a.out)[i] = store<K>(gates::relu_square(load(static_cast<const K*>(a.k)[i])));
}

template <class K>
__global__ void relu_square_backward_kernel(ReluSquareCudaBackward a) {
  const int64_t i = element_index();
  if (i >= a.n) return;
  const float k = load(static_cast<const K*>(a.k)[i]), g = load(static_cast<const K*>(a.gout)[i]);
  static_cast<K*>(a.gk)[i] = store<K>(gates::relu_square_backward(k, g));
}

unsigned gate_blocks(int64_t n) { return static_cast<unsigned>((n + kGateThreads - 1) / kGateThreads); }

// fn(tag) with a value of the C++ type of `t`.
template <class Fn>
void by_type(GateType t, const Fn& fn) {
  if (t == GateType::f32)
    fn(float{});
  else
    fn(__nv_bfloat16{});
}

// Launches kernel_of(r_tag, y_tag), the gate kernel for the types of r and y, over a.n elements.
template <class Args, class KernelOf>
cudaError_t launch_gate(const Args& a, cudaStream_t stream, const KernelOf& kernel_of) {
  by_type(a.r_type, [&](auto r_tag) {
    by_type(a.y_type, [&](auto y_tag) {
      const auto kernel = kernel_of(r_tag, y_tag);
      RWKV_LAUNCH(gate_blocks(a.n), static_cast<unsigned>(kGateThreads), stream, kernel)(a);
    });
  });
  return cudaGetLastError();
}

// The same for the relu² kernels, by the type of k.
template <class Args, class KernelOf>
cudaError_t launch_relu_square(const Args& a, cudaStream_t stream, const KernelOf& kernel_of) {
  by_type(a.type, [&](auto k_tag) {
    const auto kernel = kernel_of(k_tag);
    RWKV_LAUNCH(gate_blocks(a.n), static_cast<unsigned>(kGateThreads), stream, kernel)(a);
  });
  return cudaGetLastError();
}

}  // namespace

cudaError_t gate_forward(const GateCudaForward& a, cudaStream_t stream) {
  return launch_gate(a, stream, [](auto r, auto y) { return &gate_forward_kernel<decltype(r), decltype(y)>; });
}

cudaError_t gate_backward(const GateCudaBackward& a, cudaStream_t stream) {
  return launch_gate(a, stream, [](auto r, auto y) { return &gate_backward_kernel<decltype(r), decltype(y)>; });
}

cudaError_t relu_square_forward(const ReluSquareCudaForward& a, cudaStream_t stream) {
  return launch_relu_square(a, stream, [](auto k) { return &relu_square_forward_kernel<decltype(k)>; });
}

cudaError_t relu_square_backward(const ReluSquareCudaBackward& a, cudaStream_t stream) {
  return launch_relu_square(a, stream, [](auto k) { return &relu_square_backward_kernel<decltype(k)>; });
}

}  // namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE
