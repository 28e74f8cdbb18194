#pragma once
// References for the WKV tests (tests/kernels/): random inputs, the kernels/README.md "WKV"
// formula evaluated naively in double (O(T²), every term explicit), and error measures.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace rwkv::test::wkv {

struct Inputs {
  torch::Tensor time_decay, time_first, k, v;  // double
};

// k ~ U(-k_max, k_max), time_decay ~ U(d_lo, d_hi), time_first ~ U(-3, 3), v ~ N(0, 1).
inline Inputs random_inputs(int64_t B, int64_t T, int64_t C, double k_max, double d_lo, double d_hi, uint64_t seed) {
  torch::manual_seed(seed);
  const auto f64 = torch::kFloat64;
  return Inputs{torch::rand({C}, f64) * (d_hi - d_lo) + d_lo, torch::rand({C}, f64) * 6 - 3,
                (torch::rand({B, T, C}, f64) * 2 - 1) * k_max, torch::randn({B, T, C}, f64)};
}

// y_t of kernels/README.md "WKV" for one (b, c), written out term by term. Each term is e^{x_i}·v_i; the
// exponents are shifted by their maximum, which cancels between numerator and denominator.
// An initial state (A_0, B_0) = (aa0, bb0)·e^{pp0} enters as e^{t·w + pp0}·(aa0, bb0).
inline double naive_y(const double* k, const double* v, int64_t stride, int64_t t, double w, double u, double aa0 = 0,
                      double bb0 = 0, double pp0 = -INFINITY) {
  std::vector<double> x(t + 2), num_coef(t + 2), den_coef(t + 2);
  for (int64_t i = 0; i < t; ++i) {
    x[i] = (t - 1 - i) * w + k[i * stride];
    num_coef[i] = v[i * stride];
    den_coef[i] = 1;
  }
  x[t] = u + k[t * stride];
  num_coef[t] = v[t * stride];
  den_coef[t] = 1;
  x[t + 1] = t * w + pp0;
  num_coef[t + 1] = aa0;
  den_coef[t + 1] = bb0;
  double m = -INFINITY;
  for (double xi : x) m = std::max(m, xi);
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(x[i] - m);
    num += e * num_coef[i];
    den += e * den_coef[i];
  }
  return num / den;
}

// fp32 tolerance for y: the state is fp32, so every step adds a relative rounding error of about
// eps = 2^-24 and those compound over the number of tokens the sums effectively hold,
// n_eff = min(T, 1/(1 - e^w)) for the weakest decay w in play (≈ 2981 for time_decay = -8).
inline double fp32_tolerance(int64_t T, double weakest_time_decay) {
  const double eps = std::ldexp(1.0, -24);
  const double n_eff = std::min(static_cast<double>(T), 1.0 / -std::expm1(-std::exp(weakest_time_decay)));
  return 8 * eps * std::max(n_eff, 4.0);
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// max |a - b| / (1 + max |b|): errors relative to the scale of the reference.
inline double max_scaled_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return max_abs_diff(a, b) / (1.0 + b.to(torch::kFloat64).abs().max().item<double>());
}

}  // namespace rwkv::test::wkv
