#include "kernels/token_mix_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <vector>

#include "kernels/token_mix_math.h"

// Layout of the work: every (b, t) row of C channels is contiguous, and a row's mixes need only the
// row and the one before it, so the forward runs rows in parallel with a vectorizable loop over c
// per mix. The backward runs tasks of kRows consecutive tokens of one batch row: each writes its
// rows of ∂L/∂x and one row per mix of ∂L/∂μ partial sums, which are then added in task order. The
// task boundaries depend only on (B, T), never on the thread count, so the result is the same
// whatever the number of threads.
namespace rwkv::kernels {
namespace {

constexpr int64_t kRows = 16;

template <class X, class Y, class F>
struct Ptrs {
  int64_t B, T, C;
  int mixes;
  const X* x;
  const X* prev;  // nullptr: zeros
  const F* mu[token_mix::kMaxMixes];
};

// The μ_j in the arithmetic type F, from the parameters' dtype: a host-side loop over C per mix,
// no device op (the CUDA kernels read μ as stored the same way).
template <class F>
std::vector<std::vector<F>> mu_in(const std::vector<at::Tensor>& mu) {
  std::vector<std::vector<F>> out;
  for (const at::Tensor& m : mu) {
    std::vector<F> values(static_cast<size_t>(m.numel()));
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, m.scalar_type(), "token mix mu", [&] {
      const scalar_t* src = m.data_ptr<scalar_t>();
      for (size_t c = 0; c < values.size(); ++c) values[c] = static_cast<F>(src[c]);
    });
    out.push_back(std::move(values));
  }
  return out;
}

// Row t − 1 of batch row b (the carried row, or `zeros`, at t = 0).
template <class X, class Y, class F>
const X* shifted_row(const Ptrs<X, Y, F>& p, int64_t b, int64_t t, const X* zeros) {
  if (t > 0) return p.x + (b * p.T + t - 1) * p.C;
  return p.prev != nullptr ? p.prev + b * p.C : zeros;
}

template <class X, class Y, class F>
void forward_impl(const TokenMixForwardArgs& a) {
  const int64_t B = a.x.size(0), T = a.x.size(1), C = a.x.size(2);
  Ptrs<X, Y, F> p{B, T, C, static_cast<int>(a.mu.size()), a.x.data_ptr<X>(),
                  a.prev.defined() ? a.prev.data_ptr<X>() : nullptr, {}};
  Y* out[token_mix::kMaxMixes] = {};
  const std::vector<std::vector<F>> mu = mu_in<F>(a.mu);
  for (int m = 0; m < p.mixes; ++m) {
    p.mu[m] = mu[m].data();
    out[m] = a.out[m].data_ptr<Y>();
  }
  const std::vector<X> zeros(static_cast<size_t>(C), X(0));
  at::parallel_for(0, B * T, std::max<int64_t>(1, 16384 / C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const X* xr = p.x + r * C;
      const X* xp = shifted_row(p, r / T, r % T, zeros.data());
      for (int m = 0; m < p.mixes; ++m) {
        const F* mu = p.mu[m];
        Y* o = out[m] + r * C;
        for (int64_t c = 0; c < C; ++c)
          o[c] = static_cast<Y>(token_mix::mix(static_cast<F>(xr[c]), static_cast<F>(xp[c]), mu[c]));
      }
    }
  });
}

template <class X, class Y, class F>
void backward_impl(const TokenMixBackwardArgs& a) {
  const int64_t B = a.x.size(0), T = a.x.size(1), C = a.x.size(2);
  Ptrs<X, Y, F> p{B, T, C, static_cast<int>(a.mu.size()), a.x.data_ptr<X>(),
                  a.prev.defined() ? a.prev.data_ptr<X>() : nullptr, {}};
  const Y* gout[token_mix::kMaxMixes] = {};
  const std::vector<std::vector<F>> mu = mu_in<F>(a.mu);
  for (int m = 0; m < p.mixes; ++m) {
    p.mu[m] = mu[m].data();
    gout[m] = a.gout[m].data_ptr<Y>();
  }
  X* gx = a.gx.data_ptr<X>();
  X* gprev = a.gprev.defined() ? a.gprev.data_ptr<X>() : nullptr;
  const int64_t chunks = (T + kRows - 1) / kRows, tasks = B * chunks;
  // partial[(m·tasks + task)·C + c]: task's share of ∂L/∂μ_m.
  std::vector<F> partial(static_cast<size_t>(p.mixes * tasks * C), F(0));
  const std::vector<X> zeros(static_cast<size_t>(C), X(0));
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<F> acc(static_cast<size_t>(C));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, t0 = (task % chunks) * kRows, t1 = std::min(T, t0 + kRows);
      if (t0 == 0 && gprev != nullptr) {
        std::fill(acc.begin(), acc.end(), F(0));
        for (int m = 0; m < p.mixes; ++m) {
          const Y* g0 = gout[m] + b * T * C;
          const F* mu = p.mu[m];
          for (int64_t c = 0; c < C; ++c) acc[c] += token_mix::grad_x(F(0), static_cast<F>(g0[c]), mu[c]);
        }
        for (int64_t c = 0; c < C; ++c) gprev[b * C + c] = static_cast<X>(acc[c]);
      }
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r = b * T + t;
        const X* xr = p.x + r * C;
        const X* xp = shifted_row(p, b, t, zeros.data());
        std::fill(acc.begin(), acc.end(), F(0));
        for (int m = 0; m < p.mixes; ++m) {
          const Y* g = gout[m] + r * C;
          const F* mu = p.mu[m];
          F* gm = partial.data() + (m * tasks + task) * C;
          if (t + 1 < T) {
            const Y* gn = g + C;
            for (int64_t c = 0; c < C; ++c)
              acc[c] += token_mix::grad_x(static_cast<F>(g[c]), static_cast<F>(gn[c]), mu[c]);
          } else {
            for (int64_t c = 0; c < C; ++c) acc[c] += token_mix::grad_x(static_cast<F>(g[c]), F(0), mu[c]);
          }
          for (int64_t c = 0; c < C; ++c)
            gm[c] += token_mix::grad_mu(static_cast<F>(g[c]), static_cast<F>(xr[c]), static_cast<F>(xp[c]));
        }
        X* gxr = gx + r * C;
        for (int64_t c = 0; c < C; ++c) gxr[c] = static_cast<X>(acc[c]);
      }
    }
  });
  // ∂L/∂μ_j summed in F, rounded once to the μ dtype.
  std::vector<F> gmu(static_cast<size_t>(C));
  for (int m = 0; m < p.mixes; ++m) {
    std::fill(gmu.begin(), gmu.end(), F(0));
    for (int64_t task = 0; task < tasks; ++task) {
      const F* row = partial.data() + (m * tasks + task) * C;
      for (int64_t c = 0; c < C; ++c) gmu[c] += row[c];
    }
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, a.gmu[m].scalar_type(), "token mix gmu", [&] {
      scalar_t* dst = a.gmu[m].data_ptr<scalar_t>();
      for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<scalar_t>(gmu[c]);
    });
  }
}

// The (x, mix) dtype pairs the op takes (kernels/token_mix_op.h).
template <class Fn>
void dispatch(const at::Tensor& x, const at::Tensor& mixed, const Fn& fn) {
  const auto xt = x.scalar_type(), yt = mixed.scalar_type();
  if (xt == at::kFloat && yt == at::kFloat) return fn(float{}, float{}, float{});
  if (xt == at::kFloat && yt == at::kBFloat16) return fn(float{}, c10::BFloat16{}, float{});
  if (xt == at::kBFloat16 && yt == at::kBFloat16) return fn(c10::BFloat16{}, c10::BFloat16{}, float{});
  if (xt == at::kDouble && yt == at::kDouble) return fn(double{}, double{}, double{});
  TORCH_CHECK(false, "token mix (CPU): unsupported dtypes x ", xt, ", mixes ", yt);
}

}  // namespace

void token_mix_forward_cpu(const TokenMixForwardArgs& args) {
  dispatch(args.x, args.out[0], [&](auto x, auto y, auto f) {
    forward_impl<decltype(x), decltype(y), decltype(f)>(args);
  });
}

void token_mix_backward_cpu(const TokenMixBackwardArgs& args) {
  dispatch(args.x, args.gout[0], [&](auto x, auto y, auto f) {
    backward_impl<decltype(x), decltype(y), decltype(f)>(args);
  });
}

}  // namespace rwkv::kernels
