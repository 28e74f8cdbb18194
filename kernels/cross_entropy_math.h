#pragma once
// Cross-entropy with L2Wrap over rows of logits (kernels/README.md "Cross-entropy and L2Wrap"),
// written once for the CPU op (kernels/cross_entropy_cpu.cpp) and the CUDA kernels
// (kernels/cross_entropy_kernels.cuh). A row is one token position: V logits x_v and a target t.
//   loss = lse − x_t,   lse = m + log Σ_v e^{x_v − m},   m = max_v x_v = x_a
//   ∂/∂x_v of g·(mean_rows loss + factor·mean_rows ½m²) = (g/N)·(e^{x_v − lse} − [v = t] + factor·m·[v = a])
// over N rows. The arg-max a is the first index of the maximum, which is the index torch's
// max(dim) returns and so the one the unfused L2Wrap pushed; a NaN counts as larger than any number
// (torch's max propagates it), the first NaN winning. A is the accumulation type: float for fp32
// and bf16 logits, double for fp64 ones (the tests' references).
#include <cstdint>

#include "kernels/wkv_math.h"  // WKV_HD, and exp_: the WKV op's e^x (host_expf on the host, vectorizable)

namespace rwkv::kernels::xent {

WKV_HD float log_(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  return std::log(x);
#endif
}

WKV_HD double log_(double x) {
#if defined(__CUDA_ARCH__)
  return ::log(x);
#else
  return std::log(x);
#endif
}

// Whether x at index i is the arg-max rather than y at index j (i ≠ j): the larger, NaN above
// everything, the smaller index on a tie.
template <class A>
WKV_HD bool wins(A x, int64_t i, A y, int64_t j) {
  const bool x_nan = x != x, y_nan = y != y;
  if (x_nan || y_nan) return x_nan && (!y_nan || i < j);
  return x > y || (x == y && i < j);
}

// A running softmax over some entries of a row: their maximum, its first index, and
// Σ e^{x − max} over them. index < 0: no entry yet.
template <class A>
struct Softmax {
  A max;
  A sum;
  int64_t index;
};

template <class A>
WKV_HD Softmax<A> empty() {
  return Softmax<A>{A(0), A(0), -1};
}

// Adds entry x at index v.
template <class A>
WKV_HD void push(Softmax<A>& s, A x, int64_t v) {
  if (s.index < 0) {
    s = Softmax<A>{x, A(1), v};
  } else if (wins(x, v, s.max, s.index)) {
    s.sum = s.sum * wkv::exp_(s.max - x) + A(1);
    s.max = x;
    s.index = v;
  } else {
    s.sum += wkv::exp_(x - s.max);
  }
}

// The softmax over the entries of both (disjoint sets of indices).
template <class A>
WKV_HD Softmax<A> merge(const Softmax<A>& a, const Softmax<A>& b) {
  if (b.index < 0) return a;
  if (a.index < 0) return b;
  const bool take_b = wins(b.max, b.index, a.max, a.index);
  const Softmax<A>& hi = take_b ? b : a;
  const Softmax<A>& lo = take_b ? a : b;
  return Softmax<A>{hi.max, hi.sum + lo.sum * wkv::exp_(lo.max - hi.max), hi.index};
}

template <class A>
WKV_HD A log_sum_exp(A max, A sum) {
  return max + log_(sum);
}

// What the row's gradient adds at v besides the softmax: −1 at the target, factor·m at the arg-max.
template <class A>
WKV_HD A gradient_extra(int64_t v, int64_t target, int64_t argmax, A factor_max) {
  return (v == argmax ? factor_max : A(0)) - (v == target ? A(1) : A(0));
}

// ∂/∂x_v, with scale = g/N and extra = gradient_extra(...).
template <class A>
WKV_HD A gradient(A x, A lse, A extra, A scale) {
  return scale * (wkv::exp_(x - lse) + extra);
}

}  // namespace rwkv::kernels::xent
