#pragma once
// Token shift and the μ-mixes of RWKV-4 (rwkv/README.md "Forward pass"), written once for the CPU
// op (kernels/token_mix_cpu.cpp) and the CUDA kernels (kernels/token_mix_kernels.cuh). F is the
// arithmetic type: float for fp32 and bf16 I/O, double for fp64 (finite-difference checks).
//
// Per (b, t, c), with xx_t = x_{t−1} the shifted input (xx_0 = the carried row of the previous
// token, or 0 for a fresh sequence: the reference's ZeroPad2d((0, 0, 1, −1))), every mix j is
//   out_j,t = x_t·μ_j + xx_t·(1 − μ_j),
// the reference's formula as written. Backward, with g_j,t = ∂L/∂out_j,t: x_t feeds out_j,t through
// μ_j and out_j,t+1 through (1 − μ_j), the carried row feeds out_j,0 only, so
//   ∂L/∂x_t = Σ_j g_j,t·μ_j + g_j,t+1·(1 − μ_j)   (g_j,T = 0),
//   ∂L/∂prev = Σ_j g_j,0·(1 − μ_j),
//   ∂L/∂μ_j = Σ_{b,t} g_j,t·(x_t − xx_t).
#if defined(__CUDACC__)
#define TOKEN_MIX_HD __host__ __device__ __forceinline__
#else
#define TOKEN_MIX_HD inline
#endif

namespace rwkv::kernels::token_mix {

// TimeMix mixes k, v, r; ChannelMix k, r.
inline constexpr int kMaxMixes = 3;

template <class F>
TOKEN_MIX_HD F mix(F x, F xx, F mu) {
  return x * mu + xx * (F(1) - mu);
}

// One mix's share of ∂L/∂x_t: g = g_j,t, g_next = g_j,t+1 (0 past the end). With g = 0 it is the
// share of ∂L/∂prev (g_next = g_j,0).
template <class F>
TOKEN_MIX_HD F grad_x(F g, F g_next, F mu) {
  return g * mu + g_next * (F(1) - mu);
}

// One (b, t)'s term of ∂L/∂μ_j.
template <class F>
TOKEN_MIX_HD F grad_mu(F g, F x, F xx) {
  return g * (x - xx);
}

}  // namespace rwkv::kernels::token_mix
