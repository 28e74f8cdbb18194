// The WKV CUDA kernels, run on the host (kernels/wkv_host.h: the same source as the GPU's, g++
// and a loop over blocks × threads), against the CPU op (kernels/wkv_op.h) and the naive formula
// in double (tests/kernels/wkv_reference.h): what a GPU would compute, short of the device's expf,
// from the pointers kernels/wkv_op_cuda.cpp would pass (wkv_kernel_args).
// Shapes make B·C not a multiple of the 128-thread block; chunk sizes cover 1, a middle one,
// T − 1, T and more than T; every case carries an initial state and checks the final state, and
// the backward checks the initial state's gradients. Outputs start as NaN, so an element the
// kernels never write fails too.
#include <cmath>
#include <limits>

#include "kernels/wkv_host.h"
#include "kernels/wkv_math.h"
#include "kernels/wkv_op.h"
#include "tests/kernels/wkv_reference.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;
using namespace rwkv::test::wkv;
namespace kernels = rwkv::kernels;

struct Shape {
  int64_t B, T, C;
};
// 135 and 5 threads over blocks of 128 (partial last block), and exactly one full block. T against
// the kernels' look-ahead of 8 (forward) and 4 (backward) steps: 37 and 20 end in a partial group,
// 16 is whole groups, 3 is shorter than one group.
const Shape kShapes[] = {{3, 37, 45}, {1, 16, 5}, {2, 20, 64}, {2, 3, 7}};

Tensor nan_like(const Tensor& t) { return torch::full_like(t, std::numeric_limits<double>::quiet_NaN()); }
Tensor nan_tensor(at::IntArrayRef shape) {
  return torch::full(shape, std::numeric_limits<float>::quiet_NaN(), torch::kFloat32);
}

// One problem in the kernels' dtypes: time_decay and time_first in `param` (the kernels compute
// w = -exp(time_decay)), k and v in `io`, and a carried initial state: the CPU op's final state
// after a random 9-token prefix (`fresh`: no initial state, the kernels' empty one).
struct Problem {
  Tensor decay, first, k, v, aa0, bb0, pp0;
};

Problem make_problem(const Shape& s, torch::ScalarType io, uint64_t seed, torch::ScalarType param = torch::kFloat32,
                     bool fresh = false) {
  const Inputs in = random_inputs(s.B, s.T, s.C, 20, -8, 8, seed);
  const Inputs pre = random_inputs(s.B, 9, s.C, 20, -8, 8, seed + 1000);
  Problem p{in.time_decay.to(param), in.time_first.to(param), in.k.to(io), in.v.to(io), {}, {}, {}};
  if (fresh) return p;
  p.aa0 = torch::empty({s.B, s.C});
  p.bb0 = torch::empty({s.B, s.C});
  p.pp0 = torch::empty({s.B, s.C});
  kernels::wkv_forward({p.decay, p.first, pre.k.to(io), pre.v.to(io), {}, {}, {}, p.aa0, p.bb0, p.pp0,
                        torch::empty_like(pre.k.to(io))});
  return p;
}

struct Forward {
  Tensor y, aa, bb, pp;
};

Forward cpu_forward(const Problem& p) {
  const int64_t B = p.k.size(0), C = p.k.size(2);
  Forward f{torch::empty_like(p.k), torch::empty({B, C}), torch::empty({B, C}), torch::empty({B, C})};
  kernels::wkv_forward({p.decay, p.first, p.k, p.v, p.aa0, p.bb0, p.pp0, f.aa, f.bb, f.pp, f.y});
  return f;
}

// chunk 0: the sequential kernel; otherwise the chunked one.
Forward host_forward(const Problem& p, int64_t chunk) {
  const int64_t B = p.k.size(0), C = p.k.size(2);
  Forward f{nan_like(p.k), nan_tensor({B, C}), nan_tensor({B, C}), nan_tensor({B, C})};
  const kernels::WkvCudaForward a =
      kernels::wkv_kernel_args({p.decay, p.first, p.k, p.v, p.aa0, p.bb0, p.pp0, f.aa, f.bb, f.pp, f.y});
  const kernels::WkvIo io = kernels::wkv_kernel_io(p.k);
  kernels::host::cudaError_t status;
  if (chunk == 0) {
    status = kernels::host::wkv_forward(io, a, nullptr);
  } else {
    Tensor scratch = nan_tensor({3, (a.T + chunk - 1) / chunk, a.B, a.C});
    status = kernels::host::wkv_forward_chunked(io, a, chunk, scratch.data_ptr<float>(), nullptr);
  }
  REQUIRE(status == kernels::host::cudaSuccess);
  return f;
}

// (A, B) = (aa, bb)·e^pp of two final states, compared at the larger exponent: max relative error.
double state_diff(const Forward& got, const Forward& ref) {
  const Tensor m = torch::maximum(got.pp, ref.pp);
  const Tensor sg = torch::exp(got.pp - m), sr = torch::exp(ref.pp - m);
  const Tensor eb = ((got.bb * sg - ref.bb * sr).abs() / (ref.bb * sr).abs()).max();
  const Tensor ea = ((got.aa * sg - ref.aa * sr).abs() / ((ref.aa * sr).abs() + ref.bb * sr)).max();
  return torch::maximum(eb, ea).item<double>();  // NaN (a state never written) propagates
}

// The naive formula in double from the problem's own (rounded) inputs and initial state, with
// w = -exp(time_decay) in double.
double naive_error(const Problem& p, const Tensor& y) {
  const Tensor k = p.k.to(torch::kFloat64).contiguous(), v = p.v.to(torch::kFloat64).contiguous();
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  const Tensor w64 = -torch::exp(p.decay.to(torch::kFloat64)), u64 = p.first.to(torch::kFloat64);
  const auto w = w64.accessor<double, 1>(), u = u64.accessor<double, 1>();
  // Without an initial state: the empty one, A_0 = B_0 = 0.
  const Tensor aa0 = p.aa0.defined() ? p.aa0 : torch::zeros({B, C}), bb0 = p.bb0.defined() ? p.bb0 : torch::zeros({B, C}),
               pp0 = p.pp0.defined() ? p.pp0 : torch::full({B, C}, -INFINITY);
  const auto aa = aa0.accessor<float, 2>(), bb = bb0.accessor<float, 2>(), pp = pp0.accessor<float, 2>();
  if (!torch::isfinite(y).all().item<bool>()) return std::numeric_limits<double>::infinity();
  const Tensor y64 = y.to(torch::kFloat64);
  const auto ya = y64.accessor<double, 3>();
  double worst = 0, scale = 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < T; ++t) {
        const double ref = naive_y(k.data_ptr<double>() + b * T * C + c, v.data_ptr<double>() + b * T * C + c, C, t,
                                   w[c], u[c], aa[b][c], bb[b][c], pp[b][c]);
        worst = std::max(worst, std::abs(ya[b][t][c] - ref));
        scale = std::max(scale, 1 + std::abs(ref));
      }
  return worst / scale;
}

// Agreement with the CPU op: a few fp32 ulps for fp32 I/O (FMA, expf vs host_expf, and the chunked
// form's other order), one bf16 rounding step (2^-8) for bf16 I/O.
double io_tolerance(torch::ScalarType io) { return io == torch::kBFloat16 ? 4e-3 : 2e-5; }
constexpr double kStateTolerance = 2e-5;  // the state is fp32 for either I/O dtype
// The chunked form combines chunk states in another order and rounds n·w in the exponent of each
// combination: up to ~400 fp32 ulps of the final state on these inputs (3e-5 measured).
constexpr double kChunkedStateTolerance = 1e-4;

}  // namespace

// The parameter dtypes and initial states every kernel test runs: fp32 and bf16 parameters (read
// as stored, w = -exp(time_decay) computed in the kernels), a carried state and none (the empty
// state the kernels make themselves).
struct Variant {
  torch::ScalarType param;
  bool fresh;
};
const Variant kVariants[] = {{torch::kFloat32, false}, {torch::kBFloat16, false}, {torch::kFloat32, true},
                             {torch::kBFloat16, true}};

TEST_CASE("host-run WKV forward kernel equals the CPU op and the naive formula", "[kernels]") {
  uint64_t seed = 1;
  for (const Shape& s : kShapes)
    for (const auto io : {torch::kFloat32, torch::kBFloat16})
    for (const Variant& var : kVariants) {
      const Problem p = make_problem(s, io, seed++, var.param, var.fresh);
      CAPTURE(var.param, var.fresh);
      const Forward ref = cpu_forward(p), got = host_forward(p, 0);
      const double ey = max_scaled_diff(got.y, ref.y), es = state_diff(got, ref), en = naive_error(p, got.y);
      CAPTURE(s.B, s.T, s.C, io, ey, es, en);
      CHECK(ey < io_tolerance(io));
      CHECK(es < kStateTolerance);
      CHECK(en < (io == torch::kBFloat16 ? 4e-3 : fp32_tolerance(s.T, -8)));
    }
}

TEST_CASE("host-run chunked WKV forward kernels equal the CPU op for every chunk size", "[kernels]") {
  uint64_t seed = 11;
  for (const Shape& s : kShapes)
    for (const auto io : {torch::kFloat32, torch::kBFloat16})
    for (const Variant& var : kVariants) {
      const Problem p = make_problem(s, io, seed++, var.param, var.fresh);
      CAPTURE(var.param, var.fresh);
      const Forward ref = cpu_forward(p);
      for (const int64_t chunk : {int64_t{1}, int64_t{7}, s.T - 1, s.T, s.T + 13}) {
        const Forward got = host_forward(p, chunk);
        const double ey = max_scaled_diff(got.y, ref.y), es = state_diff(got, ref);
        CAPTURE(s.B, s.T, s.C, io, chunk, ey, es);
        CHECK(ey < io_tolerance(io));
        CHECK(es < kChunkedStateTolerance);
      }
    }
}

namespace {

struct Backward {
  Tensor gk, gv, g_decay, g_first, g_aa0, g_bb0, g_pp0;
};

// ∂L/∂y random in `io`; ∂L/∂(aa_T, bb_T) random, as when the final state feeds the next chunk
// (`final_used` false: undefined, the final state unused).
struct Cotangents {
  Tensor gy, g_aa_T, g_bb_T;
};

Cotangents random_cotangents(const Problem& p, bool final_used = true) {
  const int64_t B = p.k.size(0), C = p.k.size(2);
  Cotangents g{torch::randn(p.k.sizes()).to(p.k.scalar_type()), {}, {}};
  if (final_used) {
    g.g_aa_T = torch::randn({B, C});
    g.g_bb_T = torch::randn({B, C});
  }
  return g;
}

// The gradients' tensors, filled with `fill` (NaN for the host run: anything unwritten shows).
Backward outputs(const Problem& p, double fill) {
  const int64_t B = p.k.size(0), C = p.k.size(2);
  const auto state = [&] { return p.aa0.defined() ? torch::full({B, C}, fill, p.aa0.options()) : Tensor(); };
  return {torch::full_like(p.k, fill), torch::full_like(p.k, fill), torch::full_like(p.decay, fill),
          torch::full_like(p.first, fill), state(), state(), state()};
}

kernels::WkvBackwardArgs backward_args(const Problem& p, const Cotangents& g, const Backward& r) {
  return {p.decay, p.first, p.k, p.v, p.aa0, p.bb0, p.pp0, g.gy, g.g_aa_T, g.g_bb_T, r.gk, r.gv, r.g_decay,
          r.g_first, r.g_aa0, r.g_bb0, r.g_pp0};
}

Backward cpu_backward(const Problem& p, const Cotangents& g) {
  Backward r = outputs(p, 0);
  kernels::wkv_backward(backward_args(p, g, r));
  return r;
}

// chunk 0: the sequential kernel; otherwise the chunked one (scratch and workspace start as NaN,
// so anything read before it is written shows).
Backward host_backward(const Problem& p, const Cotangents& g, int64_t chunk = 0) {
  Backward r = outputs(p, std::numeric_limits<double>::quiet_NaN());
  Tensor workspace = kernels::wkv_backward_workspace(p.k).fill_(std::numeric_limits<double>::quiet_NaN());
  const kernels::WkvCudaBackward a = kernels::wkv_kernel_args(backward_args(p, g, r), workspace);
  const kernels::WkvIo io = kernels::wkv_kernel_io(p.k);
  if (chunk == 0) {
    REQUIRE(kernels::host::wkv_backward(io, a, nullptr) == kernels::host::cudaSuccess);
  } else {
    Tensor scratch = nan_tensor({kernels::host::wkv_backward_chunked_scratch(a, chunk)});
    REQUIRE(kernels::host::wkv_backward_chunked(io, a, chunk, scratch.data_ptr<float>(), nullptr) ==
            kernels::host::cudaSuccess);
  }
  return r;
}

// Largest difference of the initial state's gradients (0 without an initial state, where neither
// side may have any).
double initial_grads_diff(const Backward& got, const Backward& ref) {
  if (!ref.g_aa0.defined()) return got.g_aa0.defined() ? std::numeric_limits<double>::infinity() : 0.0;
  return std::max({max_scaled_diff(got.g_aa0, ref.g_aa0), max_scaled_diff(got.g_bb0, ref.g_bb0),
                   max_scaled_diff(got.g_pp0, ref.g_pp0)});
}

}  // namespace

// ∂L/∂time_decay and ∂L/∂time_first are sums over B·T steps in fp32, rounded once to the
// parameter dtype: the fp32 state tolerance, or one bf16 rounding step.
double param_tolerance(torch::ScalarType param, double fp32) { return param == torch::kBFloat16 ? 8e-3 : fp32; }

TEST_CASE("host-run WKV backward kernel equals the CPU op, initial-state gradients included", "[kernels]") {
  uint64_t seed = 21;
  for (const Shape& s : kShapes)
    for (const auto io : {torch::kFloat32, torch::kBFloat16})
      for (const Variant& var : kVariants) {
        const Problem p = make_problem(s, io, seed++, var.param, var.fresh);
        const Cotangents g = random_cotangents(p, /*final_used=*/!var.fresh);
        const Backward ref = cpu_backward(p, g), got = host_backward(p, g);
        const double tol = io_tolerance(io);
        CAPTURE(s.B, s.T, s.C, io, var.param, var.fresh);
        CHECK(max_scaled_diff(got.gk, ref.gk) < tol);
        CHECK(max_scaled_diff(got.gv, ref.gv) < tol);
        // The fp32 partials sum over T steps of bf16-rounded inputs either way: the fp32 tolerance.
        CHECK(max_scaled_diff(got.g_decay, ref.g_decay) < param_tolerance(var.param, kStateTolerance));
        CHECK(max_scaled_diff(got.g_first, ref.g_first) < param_tolerance(var.param, kStateTolerance));
        CHECK(got.g_decay.scalar_type() == var.param);
        CHECK(initial_grads_diff(got, ref) < kStateTolerance);
      }
}

TEST_CASE("host-run chunked WKV backward kernels equal the CPU op for every chunk size", "[kernels]") {
  uint64_t seed = 31;
  for (const Shape& s : kShapes)
    for (const auto io : {torch::kFloat32, torch::kBFloat16})
      for (const Variant& var : kVariants) {
        const Problem p = make_problem(s, io, seed++, var.param, var.fresh);
        const Cotangents g = random_cotangents(p, /*final_used=*/!var.fresh);
        const Backward ref = cpu_backward(p, g);
        for (const int64_t chunk : {int64_t{1}, int64_t{7}, s.T - 1, s.T, s.T + 13}) {
          if (chunk < 1) continue;
          const Backward got = host_backward(p, g, chunk);
          const double ek = max_scaled_diff(got.gk, ref.gk), ev = max_scaled_diff(got.gv, ref.gv),
                       ed = max_scaled_diff(got.g_decay, ref.g_decay), ef = max_scaled_diff(got.g_first, ref.g_first),
                       ei = initial_grads_diff(got, ref);
          CAPTURE(s.B, s.T, s.C, io, var.param, var.fresh, chunk, ek, ev, ed, ef, ei);
          // The adjoint combines chunk summaries in another order, and ∂L/∂w, ∂L/∂u are summed per
          // chunk first: the chunked forward's state tolerance for everything in fp32.
          const double tol = io == torch::kBFloat16 ? io_tolerance(io) : kChunkedStateTolerance;
          CHECK(ek < tol);
          CHECK(ev < tol);
          CHECK(ed < param_tolerance(var.param, kChunkedStateTolerance));
          CHECK(ef < param_tolerance(var.param, kChunkedStateTolerance));
          CHECK(ei < kChunkedStateTolerance);
        }
      }
}

// The decay folded into the kernels (w = -exp(time_decay) and ∂L/∂time_decay = w·∂L/∂w inside):
// the host-run fp32 kernel's parameter gradients against the CPU op in double on the same
// (rounded) inputs, whose gradients tests/kernels/test_wkv.cpp checks by finite differences.
TEST_CASE("host-run WKV parameter gradients equal the fp64 op", "[kernels]") {
  uint64_t seed = 41;
  for (const Shape& s : kShapes)
    for (const Variant& var : kVariants) {
      const Problem p = make_problem(s, torch::kFloat32, seed++, var.param, var.fresh);
      const Cotangents g = random_cotangents(p, /*final_used=*/!var.fresh);
      const auto f64 = [](const Tensor& t) { return t.defined() ? t.to(torch::kFloat64) : t; };
      const Problem p64{f64(p.decay), f64(p.first), f64(p.k), f64(p.v), f64(p.aa0), f64(p.bb0), f64(p.pp0)};
      const Backward got = host_backward(p, g), ref = cpu_backward(p64, {f64(g.gy), f64(g.g_aa_T), f64(g.g_bb_T)});
      const double ed = max_scaled_diff(got.g_decay, ref.g_decay), ef = max_scaled_diff(got.g_first, ref.g_first);
      CAPTURE(s.B, s.T, s.C, var.param, var.fresh, ed, ef);
      CHECK(ed < param_tolerance(var.param, 1e-4));
      CHECK(ef < param_tolerance(var.param, 1e-4));
    }
}
