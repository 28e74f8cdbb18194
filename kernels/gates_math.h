#pragma once
// The gates and the activation of RWKV-4's mixers (rwkv/README.md "Forward pass"), elementwise,
// written once for the CPU op (kernels/gates_cpu.cpp) and the CUDA kernels
// (kernels/gates_kernels.cuh). F is the arithmetic type: float for fp32 and bf16 I/O, double for
// fp64 (finite-difference checks).
//
// Sigmoid gate (TimeMix's sigmoid(r)·wkv, ChannelMix's sigmoid(r)·value(k)), out = σ(r)·y:
//   ∂L/∂y = g·σ(r),   ∂L/∂r = g·y·σ(r)(1 − σ(r)).
// With e = e^{−|r|} ∈ (0, 1] and q = 1/(1 + e): σ(r) = q for r ≥ 0 and e·q for r < 0, and
// σ(r)(1 − σ(r)) = e·q² for both signs. One exponential that never overflows, and no 1 − σ
// cancellation: the derivative stays accurate where σ rounds to 1 (r > 17 in fp32), where
// ATen's (1 − σ)·σ is 0. For r < −87 in fp32, e^{−|r|} is 0 on the host (host_expf) and so is σ,
// as ATen's 1/(1 + e^{−r}) = 1/∞ gives.
//
// Squared ReLU (ChannelMix's key activation, the paper's "squared ReLU"), out = max(k, 0)²:
//   ∂L/∂k = 2·max(k, 0)·g,
// 0 at k = 0, as torch's relu (threshold_backward passes the gradient only where relu(k) > 0) and
// square give. A NaN k stays NaN forward and backward, as torch's relu propagates it.
#include "kernels/wkv_math.h"  // WKV_HD, and exp_: e^x (host_expf on the host, vectorizable)

namespace rwkv::kernels::gates {

// e = e^{−|r|} and q = 1/(1 + e), from which σ(r) and σ'(r) follow (above).
template <class F>
struct Sigmoid {
  F e, q;
};

template <class F>
WKV_HD Sigmoid<F> sigmoid_parts(F r) {
  const F e = wkv::exp_(r < F(0) ? r : -r);
  return Sigmoid<F>{e, F(1) / (F(1) + e)};
}

template <class F>
WKV_HD F sigmoid_value(F r, const Sigmoid<F>& s) {
  return r < F(0) ? s.e * s.q : s.q;
}

// σ(r)·y.
template <class F>
WKV_HD F gate(F r, F y) {
  return sigmoid_value(r, sigmoid_parts(r)) * y;
}

// ∂L/∂r and ∂L/∂y of σ(r)·y for the incoming gradient g.
template <class F>
WKV_HD void gate_backward(F r, F y, F g, F& gr, F& gy) {
  const Sigmoid<F> s = sigmoid_parts(r);
  gy = g * sigmoid_value(r, s);
  gr = g * y * (s.e * s.q * s.q);
}

// max(k, 0), NaN passed through (k < 0 is false for NaN).
template <class F>
WKV_HD F relu(F k) {
  return k < F(0) ? F(0) : k;
}

template <class F>
WKV_HD F relu_square(F k) {
  const F a = relu(k);
  return a * a;
}

template <class F>
WKV_HD F relu_square_backward(F k, F g) {
  return F(2) * relu(k) * g;
}

}  // namespace rwkv::kernels::gates
