#include "kernels/wkv_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "kernels/wkv_math.h"

// Layout of the work: channel c of batch row b is an independent recurrence over t, and C is the
// innermost (contiguous) dimension. Each task owns one batch row and a block of kBlock channels,
// keeps their state in small local arrays, and at every t runs the per-channel step of
// wkv_math.h over the block: a loop over contiguous memory with no calls left after inlining,
// which the compiler vectorizes (host_expf is branch-free for this reason).
//
// Backward scheme: a forward pass stores the state before every step in a (3, B, T, C) workspace,
// then one reverse pass computes every gradient (∂L/∂w included, via the α' recursion of
// wkv_math.h). Alternatives considered: inverting the state update in the reverse pass divides by
// e^w, which is 0 in float for strong decay; a second forward pass for ∂L/∂w still needs the
// per-step g/D in reverse order. The workspace costs 3 floats per (b, t, c) during the backward of
// one layer only (it is not kept between forward and backward), and works for any T.
namespace rwkv::kernels {
namespace {

constexpr int64_t kBlock = 64;

struct Shape {
  int64_t B, T, C;
};

// Runs fn(b, c0, n) over all (batch row, channel block) pairs in parallel.
template <class Fn>
void for_each_block(const Shape& s, const Fn& fn) {
  const int64_t blocks = (s.C + kBlock - 1) / kBlock;
  at::parallel_for(0, s.B * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / blocks, c0 = (i % blocks) * kBlock;
      fn(b, c0, std::min(kBlock, s.C - c0));
    }
  });
}

// Raw pointers of one call, so the per-block bodies below need no tensors.
// w and u are the call's per-channel decay and bonus in F (parameters_in below); a null aa0 is
// the empty state, a null g_aa_T a final state that does not reach the loss, a null g_aa0 an
// initial-state gradient nobody wants.
template <class IO, class F>
struct ForwardPtrs {
  const F *w, *u;
  const IO *k, *v;
  IO* y;
  const F *aa0, *bb0, *pp0;
  F *aa, *bb, *pp;
};

template <class IO, class F>
struct BackwardPtrs {
  const F *w, *u;
  const IO *k, *v, *gy;
  const F *aa0, *bb0, *pp0, *g_aa_T, *g_bb_T;
  IO *gk, *gv;
  F *gw, *gu, *g_aa0, *g_bb0, *g_pp0;
  F *ws_aa, *ws_bb, *ws_pp;
};

// The n-channel block of the initial state at offset st into sa, sb, sp (the empty state without one).
template <class F>
inline void initial_block(const F* aa0, const F* bb0, const F* pp0, int64_t st, int64_t n, F* sa, F* sb, F* sp) {
  const wkv::State<F> empty = wkv::empty_state<F>();
  for (int64_t j = 0; j < n; ++j) {
    sa[j] = aa0 != nullptr ? aa0[st + j] : empty.aa;
    sb[j] = bb0 != nullptr ? bb0[st + j] : empty.bb;
    sp[j] = pp0 != nullptr ? pp0[st + j] : empty.pp;
  }
}

template <class IO, class F>
inline void forward_block(const ForwardPtrs<IO, F>& a, const Shape& s, int64_t b, int64_t c0, int64_t n) {
  F sa[kBlock], sb[kBlock], sp[kBlock];
  const int64_t st = b * s.C + c0;
  initial_block(a.aa0, a.bb0, a.pp0, st, n, sa, sb, sp);
  const F* wb = a.w + c0;
  const F* ub = a.u + c0;
  for (int64_t t = 0; t < s.T; ++t) {
    const int64_t off = (b * s.T + t) * s.C + c0;
    const IO* kt = a.k + off;
    const IO* vt = a.v + off;
    IO* yt = a.y + off;
    for (int64_t j = 0; j < n; ++j) {
      wkv::State<F> state{sa[j], sb[j], sp[j]};
      yt[j] = static_cast<IO>(wkv::forward_step(state, wb[j], ub[j], static_cast<F>(kt[j]), static_cast<F>(vt[j])));
      sa[j] = state.aa;
      sb[j] = state.bb;
      sp[j] = state.pp;
    }
  }
  std::copy_n(sa, n, a.aa + st);
  std::copy_n(sb, n, a.bb + st);
  std::copy_n(sp, n, a.pp + st);
}

template <class IO, class F>
inline void backward_block(const BackwardPtrs<IO, F>& a, const Shape& s, int64_t b, int64_t c0, int64_t n) {
  const int64_t st = b * s.C + c0;
  const F* wb = a.w + c0;
  const F* ub = a.u + c0;
  // Pass 1 (forward): the state before every step.
  F sa[kBlock], sb[kBlock], sp[kBlock];
  initial_block(a.aa0, a.bb0, a.pp0, st, n, sa, sb, sp);
  for (int64_t t = 0; t < s.T; ++t) {
    const int64_t off = (b * s.T + t) * s.C + c0;
    const IO* kt = a.k + off;
    const IO* vt = a.v + off;
    F* wa = a.ws_aa + off;
    F* wbb = a.ws_bb + off;
    F* wp = a.ws_pp + off;
    for (int64_t j = 0; j < n; ++j) {
      wa[j] = sa[j];
      wbb[j] = sb[j];
      wp[j] = sp[j];
      wkv::State<F> state{sa[j], sb[j], sp[j]};
      wkv::update(state, wb[j], static_cast<F>(kt[j]), static_cast<F>(vt[j]));
      sa[j] = state.aa;
      sb[j] = state.bb;
      sp[j] = state.pp;
    }
  }
  // Pass 2 (reverse): every gradient. sp now holds the final pp.
  F ja[kBlock], jb[kBlock], jaw[kBlock], jbw[kBlock], js[kBlock], acc_w[kBlock], acc_u[kBlock];
  for (int64_t j = 0; j < n; ++j) {
    const wkv::Adjoint<F> adj =
        wkv::adjoint_from_final(wkv::State<F>{sa[j], sb[j], sp[j]}, a.g_aa_T != nullptr ? a.g_aa_T[st + j] : F(0),
                                a.g_bb_T != nullptr ? a.g_bb_T[st + j] : F(0));
    ja[j] = adj.a;
    jb[j] = adj.b;
    jaw[j] = adj.aw;
    jbw[j] = adj.bw;
    js[j] = adj.s;
    acc_w[j] = F(0);
    acc_u[j] = F(0);
  }
  // The step's rows are staged in local arrays: the arithmetic loop then reads and writes only
  // locals, which nothing else can alias. Reading the 8 rows in place needs more run-time alias
  // checks than GCC emits (with fp32 I/O every row is a float*), and the loop stayed scalar.
  F kl[kBlock], vl[kBlock], gl[kBlock], al[kBlock], bl[kBlock], pl[kBlock], dkl[kBlock], dvl[kBlock];
  for (int64_t t = s.T - 1; t >= 0; --t) {
    const int64_t off = (b * s.T + t) * s.C + c0;
    for (int64_t j = 0; j < n; ++j) {
      kl[j] = static_cast<F>(a.k[off + j]);
      vl[j] = static_cast<F>(a.v[off + j]);
      gl[j] = static_cast<F>(a.gy[off + j]);
      al[j] = a.ws_aa[off + j];
      bl[j] = a.ws_bb[off + j];
      pl[j] = a.ws_pp[off + j];
    }
    for (int64_t j = 0; j < n; ++j) {
      wkv::Adjoint<F> adj{ja[j], jb[j], jaw[j], jbw[j], js[j]};
      wkv::backward_step(wkv::State<F>{al[j], bl[j], pl[j]}, adj, wb[j], ub[j], kl[j], vl[j], gl[j], dkl[j], dvl[j],
                         acc_w[j], acc_u[j]);
      ja[j] = adj.a;
      jb[j] = adj.b;
      jaw[j] = adj.aw;
      jbw[j] = adj.bw;
      js[j] = adj.s;
    }
    for (int64_t j = 0; j < n; ++j) {
      a.gk[off + j] = static_cast<IO>(dkl[j]);
      a.gv[off + j] = static_cast<IO>(dvl[j]);
    }
  }
  // The empty initial state has no gradient and adds nothing to ∂L/∂w (e^pp0 = 0).
  if (a.aa0 != nullptr) {
    for (int64_t j = 0; j < n; ++j) {
      const wkv::Adjoint<F> adj{ja[j], jb[j], jaw[j], jbw[j], js[j]};
      wkv::backward_initial(wkv::State<F>{a.aa0[st + j], a.bb0[st + j], a.pp0[st + j]}, adj, a.g_aa0[st + j],
                            a.g_bb0[st + j], a.g_pp0[st + j], acc_w[j]);
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    a.gw[st + j] = acc_w[j];
    a.gu[st + j] = acc_u[j];
  }
}

// One block per call, compiled twice on x86-64 GCC: for AVX2+FMA (arch=haswell: 8 floats per
// vector instead of SSE2's 4, the baseline of the build) and for the baseline, picked once at load
// time by the CPU's features (an ifunc). `flatten` inlines every callee into each clone, so no
// shared inline function (wkv_math.h, c10) is ever emitted with AVX2 instructions for the
// baseline path to call. The FMA clone rounds a few operations differently (fused multiply-add):
// results can differ by ulps between machines, never between runs on one machine.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WKV_CPU_CLONES __attribute__((target_clones("arch=haswell", "default"), flatten))
#else
#define WKV_CPU_CLONES
#endif

#define WKV_CPU_BLOCKS(IO, F, NAME)                                                                              \
  WKV_CPU_CLONES void forward_##NAME(const ForwardPtrs<IO, F>& a, const Shape& s, int64_t b, int64_t c0,       \
                                     int64_t n) {                                                              \
    forward_block(a, s, b, c0, n);                                                                              \
  }                                                                                                             \
  WKV_CPU_CLONES void backward_##NAME(const BackwardPtrs<IO, F>& a, const Shape& s, int64_t b, int64_t c0,     \
                                      int64_t n) {                                                             \
    backward_block(a, s, b, c0, n);                                                                             \
  }
WKV_CPU_BLOCKS(float, float, f32)
WKV_CPU_BLOCKS(at::BFloat16, float, bf16)
WKV_CPU_BLOCKS(double, double, f64)
#undef WKV_CPU_BLOCKS

template <class F>
F* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<F>() : nullptr;
}

// The parameters as the recurrences take them: w = −exp(time_decay) (wkv_math.h decay) and
// u = time_first, per channel in F, read from the parameter dtype. Host-side loops over C: no
// device op (the CUDA kernels do the same per thread).
template <class F>
struct Parameters {
  std::vector<F> w, u;
};

template <class F>
Parameters<F> parameters_in(const at::Tensor& time_decay, const at::Tensor& time_first) {
  const int64_t C = time_decay.numel();
  Parameters<F> p{std::vector<F>(static_cast<size_t>(C)), std::vector<F>(static_cast<size_t>(C))};
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, time_decay.scalar_type(), "wkv parameters", [&] {
    const scalar_t* d = time_decay.data_ptr<scalar_t>();
    const scalar_t* f = time_first.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      p.w[c] = wkv::decay(static_cast<F>(d[c]));
      p.u[c] = static_cast<F>(f[c]);
    }
  });
  return p;
}

template <class IO, class F, class Block>
void forward_impl(const WkvForwardArgs& a, const Shape& s, Block block) {
  const Parameters<F> params = parameters_in<F>(a.time_decay, a.time_first);
  const ForwardPtrs<IO, F> p{params.w.data(),     params.u.data(),    a.k.data_ptr<IO>(),  a.v.data_ptr<IO>(),
                             a.y.data_ptr<IO>(),  ptr_or_null<F>(a.aa0), ptr_or_null<F>(a.bb0), ptr_or_null<F>(a.pp0),
                             a.aa.data_ptr<F>(), a.bb.data_ptr<F>(), a.pp.data_ptr<F>()};
  for_each_block(s, [&](int64_t b, int64_t c0, int64_t n) { block(p, s, b, c0, n); });
}

template <class IO, class F, class Block>
void backward_impl(const WkvBackwardArgs& a, const at::Tensor& workspace, const Shape& s, Block block) {
  const int64_t plane = s.B * s.T * s.C;
  F* ws = workspace.data_ptr<F>();
  const Parameters<F> params = parameters_in<F>(a.time_decay, a.time_first);
  const BackwardPtrs<IO, F> p{params.w.data(),           params.u.data(),           a.k.data_ptr<IO>(),
                              a.v.data_ptr<IO>(),        a.gy.data_ptr<IO>(),       ptr_or_null<F>(a.aa0),
                              ptr_or_null<F>(a.bb0),     ptr_or_null<F>(a.pp0),     ptr_or_null<F>(a.g_aa_T),
                              ptr_or_null<F>(a.g_bb_T),  a.gk.data_ptr<IO>(),       a.gv.data_ptr<IO>(),
                              ws + 3 * plane,            ws + 3 * plane + s.B * s.C, ptr_or_null<F>(a.g_aa0),
                              ptr_or_null<F>(a.g_bb0),   ptr_or_null<F>(a.g_pp0),   ws,
                              ws + plane,                ws + 2 * plane};
  for_each_block(s, [&](int64_t b, int64_t c0, int64_t n) { block(p, s, b, c0, n); });
  // The parameters' gradients, summed over the batch and stored in their own dtype.
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, a.g_decay.scalar_type(), "wkv parameter gradients", [&] {
    scalar_t* gd = a.g_decay.data_ptr<scalar_t>();
    scalar_t* gf = a.g_first.data_ptr<scalar_t>();
    for (int64_t c = 0; c < s.C; ++c) {
      F g_decay, g_first;
      wkv::parameter_grads(p.gw, p.gu, s.B, s.C, c, params.w[c], g_decay, g_first);
      gd[c] = static_cast<scalar_t>(g_decay);
      gf[c] = static_cast<scalar_t>(g_first);
    }
  });
}

Shape shape_of(const at::Tensor& k) { return Shape{k.size(0), k.size(1), k.size(2)}; }

}  // namespace

void wkv_forward_cpu(const WkvForwardArgs& args) {
  const Shape s = shape_of(args.k);
  switch (args.k.scalar_type()) {
    case at::kFloat: return forward_impl<float, float>(args, s, forward_f32);
    case at::kBFloat16: return forward_impl<at::BFloat16, float>(args, s, forward_bf16);
    case at::kDouble: return forward_impl<double, double>(args, s, forward_f64);
    default: TORCH_CHECK(false, "wkv (CPU): unsupported dtype ", args.k.scalar_type());
  }
}

void wkv_backward_cpu(const WkvBackwardArgs& args, const at::Tensor& workspace) {
  const Shape s = shape_of(args.k);
  switch (args.k.scalar_type()) {
    case at::kFloat: return backward_impl<float, float>(args, workspace, s, backward_f32);
    case at::kBFloat16: return backward_impl<at::BFloat16, float>(args, workspace, s, backward_bf16);
    case at::kDouble: return backward_impl<double, double>(args, workspace, s, backward_f64);
    default: TORCH_CHECK(false, "wkv (CPU): unsupported dtype ", args.k.scalar_type());
  }
}

}  // namespace rwkv::kernels
