#pragma once
// The WKV recurrences of RWKV-4 (kernels/README.md "WKV"), written once for the CPU op (kernels/wkv_cpu.cpp)
// and the CUDA kernels (kernels/wkv_kernels.cuh). Everything here is per (batch, channel) and per
// time step; the callers own the loops. F is the state/accumulation type: float for fp32 and
// bf16 inputs (the state must stay fp32, e^w can be within 1e-3 of 1), double for fp64 inputs
// (finite-difference checks). Callers convert their I/O type to F on load.
//
// State: the stable triple (aa, bb, pp) stands for the unscaled sums A = aa·e^pp, B = bb·e^pp of
//   A_t = Σ_{i<t} e^{(t-1-i)w + k_i} v_i (+ e^{tw} A_0 from an initial state),  B_t likewise with v = 1.
//
// Backward (one reverse pass over t, after a forward pass that stored the state before every
// step in a caller-provided (B,T,C) workspace; see wkv_cpu.cpp for why):
//   α_t = ∂L/∂A_{t+1} = Σ_{j>t} e^{(j-1-t)w} g_j/D_j,   β_t = ∂L/∂B_{t+1} = -Σ_{j>t} e^{(j-1-t)w} g_j y_j/D_j
//   α'_t = Σ_{j>t} (j-1-t) e^{(j-1-t)w} g_j/D_j  (and β'), so that ∂L/∂w = Σ_i e^{k_i}(v_i α'_i + β'_i)
//   with the recursions α_{t-1} = e^w α_t + g_t/D_t and α'_{t-1} = e^w (α'_t + α_t).
// The adjoint carries them scaled by one shared exponent s (α = a·e^s, ...), the mirror image of
// pp: s tracks max_j((j-1-t)w - m_j), and since m_j ≥ (j-1-t)w + k_t, every factor e^{k_t + s}
// the gradients need is ≤ 1. Nothing overflows for |k| up to 60 and any decay, and the gradient
// of ∂L/∂w is accumulated in reverse, so no per-thread array sized by T is ever needed.
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define WKV_HD __host__ __device__ __forceinline__
#else
#define WKV_HD inline
#endif

namespace rwkv::kernels::wkv {

// pp of the state before any token (kernels/README.md "WKV"): e^pp is 0 in every float type.
inline constexpr float kEmptyExponent = -1e38f;

template <class F>
struct State {
  F aa, bb, pp;
};

// Reverse-pass accumulators for one channel: α = a·e^s, β = b·e^s, α' = aw·e^s, β' = bw·e^s.
template <class F>
struct Adjoint {
  F a, b, aw, bw, s;
};

template <class F>
WKV_HD F max_(F a, F b) {
  return a > b ? a : b;
}

#if !defined(__CUDA_ARCH__)
// e^x for float on the host: branch-free (Cody-Waite reduction to |r| ≤ ln2/2, degree-7 Taylor,
// exponent bits assembled by hand) so that the channel loops of wkv_cpu.cpp vectorize; libm's
// expf does not. Relative error ≈ 2 ulp. x < -87.3 gives 0 (the recurrences only need e^x for
// x ≤ 0 up to rounding; x > 88 saturates at e^88).
inline float host_expf(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  // n = round(x·log2 e), by the 1.5·2^23 trick (exact for |n| < 2^22).
  const float shifter = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606820309417232e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = __builtin_bit_cast(float, (static_cast<std::int32_t>(n) + 127) << 23);
  const float result = p * scale;
  return x < -87.3f ? 0.0f : result;
}
#endif

WKV_HD float exp_(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return host_expf(x);
#endif
}

WKV_HD double exp_(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

// The decay from the parameter: w = −e^{time_decay} (kernels/README.md "WKV"; the parameter is
// not the decay itself). Computed inside the kernels from time_decay as stored (fp32 or bf16), so
// no exp/neg launch and no cast of the parameter precede them; ∂w/∂time_decay = w.
template <class F>
WKV_HD F decay(F time_decay) {
  return -exp_(time_decay);
}

// ∂L/∂time_decay and ∂L/∂time_first of channel c from the per-(b, c) sums of ∂L/∂w and ∂L/∂u
// ((B, C) row-major): summed over the batch in order, then ∂L/∂time_decay = w·∂L/∂w.
template <class F>
WKV_HD void parameter_grads(const F* gw, const F* gu, int64_t B, int64_t C, int64_t c, F w, F& g_decay, F& g_first) {
  F sw = F(0), su = F(0);
  for (int64_t b = 0; b < B; ++b) {
    sw += gw[b * C + c];
    su += gu[b * C + c];
  }
  g_decay = w * sw;
  g_first = su;
}

// ea = e^{a - max(a,b)}, eb = e^{b - max(a,b)} with one exponential: one of them is exactly 1.
template <class F>
WKV_HD void exp_pair(F a, F b, F& ea, F& eb) {
  const F d = a - b;
  const bool a_wins = d >= F(0);
  const F e = exp_(a_wins ? -d : d);
  ea = a_wins ? F(1) : e;
  eb = a_wins ? e : F(1);
}

// Fold token (k, v) into the state: A ← e^w A + e^k v, B ← e^w B + e^k.
template <class F>
WKV_HD void update(State<F>& s, F w, F k, F v) {
  const F pw = s.pp + w;
  F e1, e2;
  exp_pair(pw, k, e1, e2);
  s.aa = e1 * s.aa + e2 * v;
  s.bb = e1 * s.bb + e2;
  s.pp = max_(pw, k);
}

// y_t from the state before t: (A + e^{u+k} v) / (B + e^{u+k}).
template <class F>
WKV_HD F output(const State<F>& s, F u, F k, F v) {
  F e1, e2;
  exp_pair(s.pp, u + k, e1, e2);
  return (e1 * s.aa + e2 * v) / (e1 * s.bb + e2);
}

// One forward step: returns y_t and advances the state past token t.
template <class F>
WKV_HD F forward_step(State<F>& s, F w, F u, F k, F v) {
  const F y = output(s, u, k, v);
  update(s, w, k, v);
  return y;
}

// The adjoint after the last token, from ∂L/∂(aa_T, bb_T) of the returned final state (zeros
// when the final state does not reach the loss). The final state is read as (A, B) = (aa, bb)·e^pp:
// every consumer of it (the next WKV chunk, RNN mode) depends on the state only through A and B,
// and for such a consumer the pp component of the incoming gradient is aa·gaa + bb·gbb, i.e.
// already implied; it is therefore not an input here.
template <class F>
WKV_HD Adjoint<F> adjoint_from_final(const State<F>& final_state, F g_aa, F g_bb) {
  return Adjoint<F>{g_aa, g_bb, F(0), F(0), -final_state.pp};
}

// One reverse step at token t, given the state before t and the adjoint holding α_t, β_t, α'_t,
// β'_t. Writes ∂L/∂k_t, ∂L/∂v_t, adds to the per-channel sums ∂L/∂w and ∂L/∂u, and moves the
// adjoint to t-1.
template <class F>
WKV_HD void backward_step(const State<F>& s, Adjoint<F>& adj, F w, F u, F k, F v, F gy, F& gk, F& gv,
                          F& gw, F& gu) {
  const F uk = u + k;
  F e1, e2;
  exp_pair(s.pp, uk, e1, e2);
  const F m = max_(s.pp, uk);  // D_t = den·e^m
  const F inv_den = F(1) / (e1 * s.bb + e2);
  const F y = (e1 * s.aa + e2 * v) * inv_den;
  const F direct = gy * e2 * inv_den;  // g_t e^{u+k_t}/D_t, |·| ≤ |g_t|
  const F ek = exp_(k + adj.s);        // e^{k_t}·e^s ≤ 1 (see the header comment)
  gv = direct + ek * adj.a;
  gk = direct * (v - y) + ek * (v * adj.a + adj.b);
  gu += direct * (v - y);
  gw += ek * (v * adj.aw + adj.bw);
  // α_{t-1} = e^w α_t + g_t/D_t where g_t/D_t = (g_t/den)·e^{-m}; α'_{t-1} = e^w (α'_t + α_t).
  const F sw = adj.s + w;
  F f1, f2;
  exp_pair(sw, -m, f1, f2);
  const F g_den = gy * inv_den;
  adj.aw = (adj.aw + adj.a) * f1;
  adj.bw = (adj.bw + adj.b) * f1;
  adj.a = adj.a * f1 + g_den * f2;
  adj.b = adj.b * f1 - g_den * y * f2;
  adj.s = max_(sw, -m);
}

// After the reverse pass reached t = 0: gradients of the initial state (aa0, bb0, pp0), with
// A_0 = aa0·e^pp0 (∂L/∂A_0 = α_{-1}), and the initial state's share of ∂L/∂w (A_0 decays by e^{tw}).
template <class F>
WKV_HD void backward_initial(const State<F>& s0, const Adjoint<F>& adj, F& g_aa, F& g_bb, F& g_pp, F& gw) {
  const F scale = exp_(s0.pp + adj.s);  // e^{pp0}·e^s ≤ 1; 0 for the empty state
  g_aa = scale * adj.a;
  g_bb = scale * adj.b;
  g_pp = scale * (s0.aa * adj.a + s0.bb * adj.b);
  gw += scale * (s0.aa * adj.aw + s0.bb * adj.bw);
}

// ---- Chunked (time-parallel) forward ------------------------------------------------------
// Splitting T into chunks makes the recurrence parallel over time as well as over (b, c), so a
// small batch or a long context still fills a GPU. Over a chunk of n tokens starting
// from state S, the unscaled sums are
//   A_{t+n} = e^{n·w} A_t + Σ_{i in chunk} e^{(t+n-1-i)w + k_i} v_i,
// i.e. the state decayed by e^{n·w} plus the chunk's own state from the empty one (its
// "summary", made with update() alone). So:
//   1. every chunk makes its summary from the empty state (in parallel over chunks);
//   2. a scan turns summaries into the state before every chunk: S_{j+1} = advance(S_j, w, n_j, summary_j);
//      advance is associative in the sense that (n1, s1) then (n2, s2) is (n1 + n2,
//      advance(s1, w, n2, s2)), so the scan may be sequential over chunks or a tree;
//   3. every chunk reruns forward_step from its start state to write y (in parallel again).
// Twice the exponentials of the sequential pass, in exchange for T/n-fold more parallelism. Each
// combination is in the same max-shifted form as update(): no exponent above 0 is ever taken.

// The state n tokens after `before`, when those n tokens alone (from the empty state) give `local`.
template <class F>
WKV_HD State<F> advance(const State<F>& before, F w, F n, const State<F>& local) {
  const F decayed = before.pp + n * w;  // exponent of e^{n·w}·A_t
  F e1, e2;
  exp_pair(decayed, local.pp, e1, e2);
  return State<F>{e1 * before.aa + e2 * local.aa, e1 * before.bb + e2 * local.bb, max_(decayed, local.pp)};
}

// The empty state (A = B = 0): the start of every chunk summary.
template <class F>
WKV_HD State<F> empty_state() {
  return State<F>{F(0), F(0), F(kEmptyExponent)};
}

// ---- Chunked backward -----------------------------------------------------------------------
// The adjoint recursions are linear with the constant factor e^w per step, so they chunk like the
// forward: over a chunk of n tokens walked in reverse, the adjoint it hands to the chunk before is
//   α_out = e^{n·w} α_in + α_local,   α'_out = e^{n·w} (α'_in + n·α_in) + α'_local
// (β, β' alike), where α_in is what the chunk after handed in and α_local what the chunk's own
// tokens give from a zero adjoint (its "summary", made with backward_step from empty_adjoint()).
// The α' line: n homogeneous steps of α'_{t-1} = e^w (α'_t + α_t) with α_t = e^{(n_0-t)w} α_in
// add n·α_in. The backward then runs: forward summaries, their scan, the states of every step
// (all chunks at once); adjoint summaries (all chunks at once), their reverse scan; the gradients
// of every chunk from its incoming adjoint (all chunks at once); the per-chunk sums of ∂L/∂w,
// ∂L/∂u and the initial state's terms per (b, c). Same max-shifted form as everywhere here.

// The zero adjoint (no gradient from later tokens): the start of every adjoint summary.
template <class F>
WKV_HD Adjoint<F> empty_adjoint() {
  return Adjoint<F>{F(0), F(0), F(0), F(0), F(kEmptyExponent)};
}

// The adjoint n tokens before `in` (handed in at a chunk's end), when those n tokens alone (from
// the zero adjoint) give `local`.
template <class F>
WKV_HD Adjoint<F> advance_adjoint(const Adjoint<F>& in, F w, F n, const Adjoint<F>& local) {
  const F decayed = in.s + n * w;  // exponent of e^{n·w}·α_in
  F e1, e2;
  exp_pair(decayed, local.s, e1, e2);
  return Adjoint<F>{e1 * in.a + e2 * local.a, e1 * in.b + e2 * local.b, e1 * (in.aw + n * in.a) + e2 * local.aw,
                    e1 * (in.bw + n * in.b) + e2 * local.bw, max_(decayed, local.s)};
}

}  // namespace rwkv::kernels::wkv
