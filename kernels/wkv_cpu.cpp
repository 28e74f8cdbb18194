#include "kernels/wkv_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>

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

template <class IO, class F>
void forward_impl(const WkvForwardArgs& a, const Shape& s) {
  const F* w = a.w.data_ptr<F>();
  const F* u = a.u.data_ptr<F>();
  const IO* k = a.k.data_ptr<IO>();
  const IO* v = a.v.data_ptr<IO>();
  IO* y = a.y.data_ptr<IO>();
  F* aa = a.aa.data_ptr<F>();
  F* bb = a.bb.data_ptr<F>();
  F* pp = a.pp.data_ptr<F>();
  for_each_block(s, [&](int64_t b, int64_t c0, int64_t n) {
    F sa[kBlock], sb[kBlock], sp[kBlock];
    const int64_t st = b * s.C + c0;
    std::copy_n(aa + st, n, sa);
    std::copy_n(bb + st, n, sb);
    std::copy_n(pp + st, n, sp);
    const F* wb = w + c0;
    const F* ub = u + c0;
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t off = (b * s.T + t) * s.C + c0;
      const IO* kt = k + off;
      const IO* vt = v + off;
      IO* yt = y + off;
      for (int64_t j = 0; j < n; ++j) {
        wkv::State<F> state{sa[j], sb[j], sp[j]};
        yt[j] = static_cast<IO>(
            wkv::forward_step(state, wb[j], ub[j], static_cast<F>(kt[j]), static_cast<F>(vt[j])));
        sa[j] = state.aa;
        sb[j] = state.bb;
        sp[j] = state.pp;
      }
    }
    std::copy_n(sa, n, aa + st);
    std::copy_n(sb, n, bb + st);
    std::copy_n(sp, n, pp + st);
  });
}

template <class IO, class F>
void backward_impl(const WkvBackwardArgs& a, const at::Tensor& workspace, const Shape& s) {
  const F* w = a.w.data_ptr<F>();
  const F* u = a.u.data_ptr<F>();
  const IO* k = a.k.data_ptr<IO>();
  const IO* v = a.v.data_ptr<IO>();
  const IO* gy = a.gy.data_ptr<IO>();
  const F* aa0 = a.aa0.data_ptr<F>();
  const F* bb0 = a.bb0.data_ptr<F>();
  const F* pp0 = a.pp0.data_ptr<F>();
  const F* g_aa_T = a.g_aa_T.data_ptr<F>();
  const F* g_bb_T = a.g_bb_T.data_ptr<F>();
  IO* gk = a.gk.data_ptr<IO>();
  IO* gv = a.gv.data_ptr<IO>();
  F* gw = a.gw.data_ptr<F>();
  F* gu = a.gu.data_ptr<F>();
  F* g_aa0 = a.g_aa0.data_ptr<F>();
  F* g_bb0 = a.g_bb0.data_ptr<F>();
  F* g_pp0 = a.g_pp0.data_ptr<F>();
  const int64_t plane = s.B * s.T * s.C;
  F* ws_aa = workspace.data_ptr<F>();
  F* ws_bb = ws_aa + plane;
  F* ws_pp = ws_bb + plane;

  for_each_block(s, [&](int64_t b, int64_t c0, int64_t n) {
    const int64_t st = b * s.C + c0;
    const F* wb = w + c0;
    const F* ub = u + c0;
    // Pass 1 (forward): the state before every step.
    F sa[kBlock], sb[kBlock], sp[kBlock];
    std::copy_n(aa0 + st, n, sa);
    std::copy_n(bb0 + st, n, sb);
    std::copy_n(pp0 + st, n, sp);
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t off = (b * s.T + t) * s.C + c0;
      const IO* kt = k + off;
      const IO* vt = v + off;
      F* wa = ws_aa + off;
      F* wbb = ws_bb + off;
      F* wp = ws_pp + off;
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
          wkv::adjoint_from_final(wkv::State<F>{sa[j], sb[j], sp[j]}, g_aa_T[st + j], g_bb_T[st + j]);
      ja[j] = adj.a;
      jb[j] = adj.b;
      jaw[j] = adj.aw;
      jbw[j] = adj.bw;
      js[j] = adj.s;
      acc_w[j] = F(0);
      acc_u[j] = F(0);
    }
    for (int64_t t = s.T - 1; t >= 0; --t) {
      const int64_t off = (b * s.T + t) * s.C + c0;
      const IO* kt = k + off;
      const IO* vt = v + off;
      const IO* gyt = gy + off;
      const F* wa = ws_aa + off;
      const F* wbb = ws_bb + off;
      const F* wp = ws_pp + off;
      IO* gkt = gk + off;
      IO* gvt = gv + off;
      for (int64_t j = 0; j < n; ++j) {
        wkv::Adjoint<F> adj{ja[j], jb[j], jaw[j], jbw[j], js[j]};
        F dk, dv;
        wkv::backward_step(wkv::State<F>{wa[j], wbb[j], wp[j]}, adj, wb[j], ub[j], static_cast<F>(kt[j]),
                           static_cast<F>(vt[j]), static_cast<F>(gyt[j]), dk, dv, acc_w[j], acc_u[j]);
        gkt[j] = static_cast<IO>(dk);
        gvt[j] = static_cast<IO>(dv);
        ja[j] = adj.a;
        jb[j] = adj.b;
        jaw[j] = adj.aw;
        jbw[j] = adj.bw;
        js[j] = adj.s;
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      const wkv::Adjoint<F> adj{ja[j], jb[j], jaw[j], jbw[j], js[j]};
      wkv::backward_initial(wkv::State<F>{aa0[st + j], bb0[st + j], pp0[st + j]}, adj, g_aa0[st + j],
                            g_bb0[st + j], g_pp0[st + j], acc_w[j]);
      gw[st + j] = acc_w[j];
      gu[st + j] = acc_u[j];
    }
  });
}

Shape shape_of(const at::Tensor& k) { return Shape{k.size(0), k.size(1), k.size(2)}; }

}  // namespace

void wkv_forward_cpu(const WkvForwardArgs& args) {
  const Shape s = shape_of(args.k);
  switch (args.k.scalar_type()) {
    case at::kFloat: return forward_impl<float, float>(args, s);
    case at::kBFloat16: return forward_impl<at::BFloat16, float>(args, s);
    case at::kDouble: return forward_impl<double, double>(args, s);
    default: TORCH_CHECK(false, "wkv (CPU): unsupported dtype ", args.k.scalar_type());
  }
}

void wkv_backward_cpu(const WkvBackwardArgs& args, const at::Tensor& workspace) {
  const Shape s = shape_of(args.k);
  switch (args.k.scalar_type()) {
    case at::kFloat: return backward_impl<float, float>(args, workspace, s);
    case at::kBFloat16: return backward_impl<at::BFloat16, float>(args, workspace, s);
    case at::kDouble: return backward_impl<double, double>(args, workspace, s);
    default: TORCH_CHECK(false, "wkv (CPU): unsupported dtype ", args.k.scalar_type());
  }
}

}  // namespace rwkv::kernels
