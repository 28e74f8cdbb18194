#include "kernels/cross_entropy_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "kernels/cross_entropy_math.h"

// at::parallel_for splits its loop over threads only where the including translation unit sees
// an intra-op backend: ATen/ParallelOpenMP.h needs this file compiled with OpenMP (cmake/Torch.cmake),
// ATen/ParallelNative.h always has one. Without it every CPU kernel here runs on one thread.
#ifndef INTRA_OP_PARALLEL
#error "at::parallel_for would run serially in the kernels: compile with OpenMP (cmake/Torch.cmake)"
#endif

namespace rwkv::kernels {
namespace {

// Entries per step of a row loop: independent accumulators the compiler keeps in vector registers
// (a float sum in one accumulator would be a serial chain it may not reorder).
constexpr int64_t kLanes = 16;

template <class A, class IO>
A load(IO x) {
  return static_cast<A>(x);
}

// The largest logit of a row, its first index and Σ e^{x − max}: a pass for the maximum (and any
// NaN), a scan for its first index, a pass for the sum.
template <class A, class IO>
xent::Softmax<A> row_softmax(const IO* x, int64_t V) {
  A lane_max[kLanes];
  int lane_nan[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) {
    lane_max[j] = load<A>(x[0]);
    lane_nan[j] = 0;
  }
  const int64_t body = V - V % kLanes;
  for (int64_t v = 0; v < body; v += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      const A xv = load<A>(x[v + j]);
      lane_max[j] = xv > lane_max[j] ? xv : lane_max[j];
      lane_nan[j] |= xv != xv;
    }
  A max = load<A>(x[0]);
  int nan = 0;
  for (int64_t j = 0; j < kLanes; ++j) {
    max = lane_max[j] > max ? lane_max[j] : max;
    nan |= lane_nan[j];
  }
  for (int64_t v = body; v < V; ++v) {
    const A xv = load<A>(x[v]);
    max = xv > max ? xv : max;
    nan |= xv != xv;
  }
  int64_t index = 0;
  if (nan) {  // the first NaN is the arg-max; the sum is NaN
    while (load<A>(x[index]) == load<A>(x[index])) ++index;
    return xent::Softmax<A>{load<A>(x[index]), load<A>(x[index]), index};
  }
  while (load<A>(x[index]) != max) ++index;
  A lane_sum[kLanes] = {};
  for (int64_t v = 0; v < body; v += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lane_sum[j] += wkv::exp_(load<A>(x[v + j]) - max);
  A sum = 0;
  for (int64_t j = 0; j < kLanes; ++j) sum += lane_sum[j];
  for (int64_t v = body; v < V; ++v) sum += wkv::exp_(load<A>(x[v]) - max);
  return xent::Softmax<A>{max, sum, index};
}

template <class IO, class A>
A forward_rows(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows) {
  const int64_t N = logits.size(0), V = logits.size(1);
  const IO* x = logits.const_data_ptr<IO>();
  const int64_t* t = targets.const_data_ptr<int64_t>();
  A* lse = rows.lse.data_ptr<A>();
  A* max = rows.max.data_ptr<A>();
  int64_t* argmax = rows.argmax.data_ptr<int64_t>();
  std::vector<A> row_loss(static_cast<size_t>(N));
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      TORCH_CHECK(t[n] >= 0 && t[n] < V, "cross_entropy: target ", t[n], " of row ", n,
                  " is outside the vocabulary [0, ", V, ")");
      const IO* row = x + n * V;
      const xent::Softmax<A> s = row_softmax<A>(row, V);
      lse[n] = xent::log_sum_exp(s.max, s.sum);
      max[n] = s.max;
      argmax[n] = s.index;
      row_loss[static_cast<size_t>(n)] = lse[n] - load<A>(row[t[n]]);
    }
  });
  double total = 0;  // in row order, whatever the threads: the same loss on every run
  for (const A l : row_loss) total += static_cast<double>(l);
  return static_cast<A>(total / static_cast<double>(N));
}

template <class IO, class A>
void backward_rows(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows, A grad_loss,
                   A factor, at::Tensor& grad) {
  const int64_t N = logits.size(0), V = logits.size(1);
  const IO* x = logits.const_data_ptr<IO>();
  const int64_t* t = targets.const_data_ptr<int64_t>();
  const A* lse = rows.lse.const_data_ptr<A>();
  const A* max = rows.max.const_data_ptr<A>();
  const int64_t* argmax = rows.argmax.const_data_ptr<int64_t>();
  IO* g = grad.data_ptr<IO>();
  const A scale = grad_loss / static_cast<A>(N);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const IO* xr = x + n * V;
      IO* gr = g + n * V;
      const A l = lse[n];
      for (int64_t v = 0; v < V; ++v) gr[v] = static_cast<IO>(xent::gradient(load<A>(xr[v]), l, A(0), scale));
      // The target and the arg-max again with their extra terms, from the logit (one rounding).
      for (const int64_t v : {t[n], argmax[n]}) {
        const A extra = xent::gradient_extra(v, t[n], argmax[n], factor * max[n]);
        gr[v] = static_cast<IO>(xent::gradient(load<A>(xr[v]), l, extra, scale));
      }
    }
  });
}

}  // namespace

XentResult cross_entropy_forward_cpu(const at::Tensor& logits, const at::Tensor& targets) {
  XentResult r{at::Tensor(), xent_empty_rows(logits)};
  switch (logits.scalar_type()) {
    case at::kDouble:
      r.loss = at::scalar_tensor(forward_rows<double, double>(logits, targets, r.rows), at::kDouble);
      break;
    case at::kBFloat16:
      r.loss = at::scalar_tensor(forward_rows<at::BFloat16, float>(logits, targets, r.rows), at::kFloat);
      break;
    default:
      r.loss = at::scalar_tensor(forward_rows<float, float>(logits, targets, r.rows), at::kFloat);
  }
  return r;
}

at::Tensor cross_entropy_backward_cpu(const at::Tensor& logits, const at::Tensor& targets, const XentRows& rows,
                                      const at::Tensor& grad_loss, double factor) {
  at::Tensor grad = at::empty_like(logits);
  switch (logits.scalar_type()) {
    case at::kDouble:
      backward_rows<double, double>(logits, targets, rows, grad_loss.item<double>(), factor, grad);
      break;
    case at::kBFloat16:
      backward_rows<at::BFloat16, float>(logits, targets, rows, grad_loss.item<float>(),
                                         static_cast<float>(factor), grad);
      break;
    default:
      backward_rows<float, float>(logits, targets, rows, grad_loss.item<float>(), static_cast<float>(factor), grad);
  }
  return grad;
}

}  // namespace rwkv::kernels
