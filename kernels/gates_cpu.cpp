#include "kernels/gates_cpu.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <type_traits>

#include "kernels/gates_math.h"

// Elementwise: blocks of kGrain elements in parallel, each one loop over contiguous memory that GCC
// vectorizes (the file builds with -fno-trapping-math, kernels/CMakeLists.txt, so the selects of
// gates_math.h and host_expf may evaluate both sides). Every element's result depends on that
// element only, so it is the same whatever the thread count.
namespace rwkv::kernels {
namespace {

constexpr int64_t kGrain = 1 << 15;

// The arithmetic type: double for fp64 I/O, float otherwise.
template <class T>
using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;

// σ(r)·y's type for (R, Y): torch's promotion (kernels/gates_op.h).
template <class R, class Y>
using GateOut = std::conditional_t<std::is_same_v<R, Y>, R, float>;

template <class R, class Y>
void gate_forward_impl(const GateForwardArgs& a) {
  using O = GateOut<R, Y>;
  using F = Acc<O>;
  const R* r = a.r.data_ptr<R>();
  const Y* y = a.y.data_ptr<Y>();
  O* out = a.out.data_ptr<O>();
  at::parallel_for(0, a.r.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = static_cast<O>(gates::gate(static_cast<F>(r[i]), static_cast<F>(y[i])));
  });
}

template <class R, class Y>
void gate_backward_impl(const GateBackwardArgs& a) {
  using O = GateOut<R, Y>;
  using F = Acc<O>;
  const R* r = a.r.data_ptr<R>();
  const Y* y = a.y.data_ptr<Y>();
  const O* g = a.gout.data_ptr<O>();
  R* gr = a.gr.data_ptr<R>();
  Y* gy = a.gy.data_ptr<Y>();
  at::parallel_for(0, a.r.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      F dr, dy;
      gates::gate_backward(static_cast<F>(r[i]), static_cast<F>(y[i]), static_cast<F>(g[i]), dr, dy);
      gr[i] = static_cast<R>(dr);
      gy[i] = static_cast<Y>(dy);
    }
  });
}

template <class K>
void relu_square_forward_impl(const ReluSquareForwardArgs& a) {
  using F = Acc<K>;
  const K* k = a.k.data_ptr<K>();
  K* out = a.out.data_ptr<K>();
  at::parallel_for(0, a.k.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = static_cast<K>(gates::relu_square(static_cast<F>(k[i])));
  });
}

template <class K>
void relu_square_backward_impl(const ReluSquareBackwardArgs& a) {
  using F = Acc<K>;
  const K* k = a.k.data_ptr<K>();
  const K* g = a.gout.data_ptr<K>();
  K* gk = a.gk.data_ptr<K>();
  at::parallel_for(0, a.k.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      gk[i] = static_cast<K>(gates::relu_square_backward(static_cast<F>(k[i]), static_cast<F>(g[i])));
  });
}

// fn(tag) with a value of the C++ type of dtype `t`, fp32 or bf16 (validated by kernels/gates_op.cpp).
template <class Fn>
void by_io_dtype(at::ScalarType t, const Fn& fn) {
  if (t == at::kBFloat16) return fn(c10::BFloat16{});
  TORCH_CHECK(t == at::kFloat, "gates (CPU): unsupported dtype ", t);
  fn(float{});
}

// The same, fp64 included.
template <class Fn>
void by_dtype(at::ScalarType t, const Fn& fn) {
  if (t == at::kDouble) return fn(double{});
  by_io_dtype(t, fn);
}

// The (r, y) pairs: both fp64, or each of fp32 and bf16.
template <class Fn>
void by_dtypes(at::ScalarType rt, at::ScalarType yt, const Fn& fn) {
  if (rt == at::kDouble && yt == at::kDouble) return fn(double{}, double{});
  by_io_dtype(rt, [&](auto r) { by_io_dtype(yt, [&](auto y) { fn(r, y); }); });
}

}  // namespace

void gate_forward_cpu(const GateForwardArgs& a) {
  by_dtypes(a.r.scalar_type(), a.y.scalar_type(),
            [&](auto r, auto y) { gate_forward_impl<decltype(r), decltype(y)>(a); });
}

void gate_backward_cpu(const GateBackwardArgs& a) {
  by_dtypes(a.r.scalar_type(), a.y.scalar_type(),
            [&](auto r, auto y) { gate_backward_impl<decltype(r), decltype(y)>(a); });
}

void relu_square_forward_cpu(const ReluSquareForwardArgs& a) {
  by_dtype(a.k.scalar_type(), [&](auto k) { relu_square_forward_impl<decltype(k)>(a); });
}

void relu_square_backward_cpu(const ReluSquareBackwardArgs& a) {
  by_dtype(a.k.scalar_type(), [&](auto k) { relu_square_backward_impl<decltype(k)>(a); });
}

}  // namespace rwkv::kernels
