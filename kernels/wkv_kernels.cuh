#pragma once
// The WKV CUDA kernels and their launch sites, one source for two builds: nvcc compiles it in
// kernels/wkv_cuda.cu (declared by kernels/wkv_cuda.h), g++ in kernels/wkv_host.cpp through
// kernels/kernel_shim.h (declared by kernels/wkv_host.h), where the tests run it on the CPU.
//
// One thread per (b, c), as the reference kernel; consecutive threads take consecutive channels,
// so every load and store at a given t is coalesced; each thread issues the loads of several time
// steps at once (over_time below). Per-thread storage is a few registers: the
// backward keeps the per-step states in the (3, B, T, C) workspace instead of T-sized arrays.
// No shared memory, barriers, warp intrinsics or atomics: each thread is independent, which is
// what makes the host launch of kernels/host_cuda.h a correct execution.
#include "kernels/kernel_io.h"
#include "kernels/kernel_shim.h"
#include "kernels/wkv_kernel_args.h"
#include "kernels/wkv_math.h"

namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE {
namespace {

constexpr int kThreads = 128;

// Look-ahead over time. Each step's loads do not depend on the recurrence, but the compiler does
// not move them across steps (the IEEE division's slow-path branch in every step stands between),
// so a plain loop waits one memory latency per step: ≈ 1 µs × T per thread, the latency-bound
// estimate of ../shared GPU.md. Here the loads of N steps are issued together before any of their
// arithmetic: one wait per N steps. `load_at(o)` reads step o's inputs into a small struct,
// `step_at(in, o)` does its arithmetic and stores; n steps starting at offset o, `stride` apart
// (negative: backwards in time). The order of the arithmetic is unchanged, so results are
// bit-identical to the one-step loop.
template <int N, class LoadAt, class StepAt>
__device__ __forceinline__ void over_time(int64_t n, int64_t o, int64_t stride, LoadAt load_at, StepAt step_at) {
  using Loaded = decltype(load_at(o));
  int64_t i = 0;
  for (; i + N <= n; i += N, o += N * stride) {
    Loaded in[N];
    RWKV_UNROLL
    for (int j = 0; j < N; ++j) in[j] = load_at(o + j * stride);
    RWKV_UNROLL
    for (int j = 0; j < N; ++j) step_at(in[j], o + j * stride);
  }
  for (; i < n; ++i, o += stride) step_at(load_at(o), o);
}

// Steps loaded ahead: the forward reads 2 values a step, the backward's reverse pass 6.
constexpr int kAheadForward = 8, kAheadBackward = 4;

// The parameters in their own dtype (fp32 or bf16), read once per thread: w = −exp(time_decay)
// is computed here (wkv_math.h decay), so no exp, neg or cast runs before the kernels.
__device__ __forceinline__ float param_at(const void* p, WkvIo io, int64_t c) {
  return io == WkvIo::bf16 ? load(static_cast<const __nv_bfloat16*>(p)[c]) : static_cast<const float*>(p)[c];
}
template <class Args>
__device__ __forceinline__ float decay_at(const Args& a, int64_t c) {
  return wkv::decay(param_at(a.time_decay, a.param, c));
}
template <class Args>
__device__ __forceinline__ float first_at(const Args& a, int64_t c) {
  return param_at(a.time_first, a.param, c);
}

// The state before token 0 of channel bc: the given one, or the empty state without one.
template <class Args>
__device__ __forceinline__ wkv::State<float> initial_state(const Args& a, int64_t bc) {
  return a.aa0 != nullptr ? wkv::State<float>{a.aa0[bc], a.bb0[bc], a.pp0[bc]} : wkv::empty_state<float>();
}

struct KV {
  float k, v;
};
struct BackwardIn {
  float aa, bb, pp, k, v, gy;
};

template <class IO>
__global__ void forward_kernel(WkvCudaForward a) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.B * a.C) return;
  const int64_t b = idx / a.C, c = idx % a.C;
  const IO* __restrict__ k = static_cast<const IO*>(a.k);
  const IO* __restrict__ v = static_cast<const IO*>(a.v);
  IO* __restrict__ y = static_cast<IO*>(a.y);
  const float w = decay_at(a, c), u = first_at(a, c);
  wkv::State<float> s = initial_state(a, idx);
  over_time<kAheadForward>(
      a.T, b * a.T * a.C + c, a.C, [&](int64_t o) { return KV{load(k[o]), load(v[o])}; },
      [&](const KV& in, int64_t o) { y[o] = store<IO>(wkv::forward_step(s, w, u, in.k, in.v)); });
  a.aa[idx] = s.aa;
  a.bb[idx] = s.bb;
  a.pp[idx] = s.pp;
}

// The backward's two walks over n steps of one (b, c), shared by the sequential kernel (all T
// steps) and the chunked one (one chunk). `first`/`last`: the offset of the first/last step.
// Forward walk: the state before every step into the workspace (kStore), advancing `s`.
template <class IO, bool kStore>
__device__ __forceinline__ void state_walk(const WkvCudaBackward& a, int64_t n, int64_t first, float w,
                                           wkv::State<float>& s) {
  const IO* __restrict__ k = static_cast<const IO*>(a.k);
  const IO* __restrict__ v = static_cast<const IO*>(a.v);
  const int64_t plane = a.B * a.T * a.C;
  float* __restrict__ ws = a.workspace;
  over_time<kAheadForward>(
      n, first, a.C, [&](int64_t o) { return KV{load(k[o]), load(v[o])}; },
      [&](const KV& in, int64_t o) {
        if (kStore) {
          ws[o] = s.aa;
          ws[plane + o] = s.bb;
          ws[2 * plane + o] = s.pp;
        }
        wkv::update(s, w, in.k, in.v);
      });
}

// Reverse walk from the adjoint `adj` after the last step: ∂L/∂k, ∂L/∂v written (kGrads),
// ∂L/∂w, ∂L/∂u added to acc_w, acc_u, and `adj` moved to before the first step.
template <class IO, bool kGrads>
__device__ __forceinline__ void adjoint_walk(const WkvCudaBackward& a, int64_t n, int64_t last, float w, float u,
                                             wkv::Adjoint<float>& adj, float& acc_w, float& acc_u) {
  const IO* __restrict__ k = static_cast<const IO*>(a.k);
  const IO* __restrict__ v = static_cast<const IO*>(a.v);
  const IO* __restrict__ gy = static_cast<const IO*>(a.gy);
  IO* __restrict__ gk = static_cast<IO*>(a.gk);
  IO* __restrict__ gv = static_cast<IO*>(a.gv);
  const int64_t plane = a.B * a.T * a.C;
  const float* __restrict__ ws = a.workspace;
  over_time<kAheadBackward>(
      n, last, -a.C,
      [&](int64_t o) {
        return BackwardIn{ws[o], ws[plane + o], ws[2 * plane + o], load(k[o]), load(v[o]), load(gy[o])};
      },
      [&](const BackwardIn& in, int64_t o) {
        float dk, dv;
        wkv::backward_step(wkv::State<float>{in.aa, in.bb, in.pp}, adj, w, u, in.k, in.v, in.gy, dk, dv, acc_w,
                           acc_u);
        if (kGrads) {
          gk[o] = store<IO>(dk);
          gv[o] = store<IO>(dv);
        }
      });
}

// The adjoint after the last token of channel bc, from the final state's gradient (none: zero).
__device__ __forceinline__ wkv::Adjoint<float> adjoint_after_last(const WkvCudaBackward& a,
                                                                  const wkv::State<float>& final_state, int64_t bc) {
  return a.g_aa_T != nullptr ? wkv::adjoint_from_final(final_state, a.g_aa_T[bc], a.g_bb_T[bc])
                             : wkv::adjoint_from_final(final_state, 0.f, 0.f);
}

// The initial state's gradients and share of ∂L/∂w from the adjoint before token 0; the empty
// state has none (e^pp0 = 0).
__device__ __forceinline__ void initial_state_grads(const WkvCudaBackward& a, const wkv::Adjoint<float>& adj,
                                                    int64_t bc, float& acc_w) {
  if (a.aa0 != nullptr)
    wkv::backward_initial(wkv::State<float>{a.aa0[bc], a.bb0[bc], a.pp0[bc]}, adj, a.g_aa0[bc], a.g_bb0[bc],
                          a.g_pp0[bc], acc_w);
}

// After either backward: per channel, ∂L/∂time_decay and ∂L/∂time_first from the per-(b, c)
// partials, summed over the batch in order and stored in the parameter dtype (one thread per c).
__global__ void parameter_grads_kernel(WkvCudaBackward a) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.C) return;
  float g_decay, g_first;
  wkv::parameter_grads<float>(a.gw, a.gu, a.B, a.C, c, decay_at(a, c), g_decay, g_first);
  if (a.param == WkvIo::bf16) {
    static_cast<__nv_bfloat16*>(a.g_decay)[c] = store<__nv_bfloat16>(g_decay);
    static_cast<__nv_bfloat16*>(a.g_first)[c] = store<__nv_bfloat16>(g_first);
  } else {
    static_cast<float*>(a.g_decay)[c] = g_decay;
    static_cast<float*>(a.g_first)[c] = g_first;
  }
}

template <class IO>
__global__ void backward_kernel(WkvCudaBackward a) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.B * a.C) return;
  const int64_t b = idx / a.C, c = idx % a.C;
  const float w = decay_at(a, c), u = first_at(a, c);
  const int64_t first = b * a.T * a.C + c;
  // Pass 1 (forward): the state before every step.
  wkv::State<float> s = initial_state(a, idx);
  state_walk<IO, true>(a, a.T, first, w, s);
  // Pass 2 (reverse): every gradient.
  wkv::Adjoint<float> adj = adjoint_after_last(a, s, idx);
  float acc_w = 0.f, acc_u = 0.f;
  adjoint_walk<IO, true>(a, a.T, first + (a.T - 1) * a.C, w, u, adj, acc_w, acc_u);
  initial_state_grads(a, adj, idx, acc_w);
  a.gw[idx] = acc_w;
  a.gu[idx] = acc_u;
}

unsigned blocks_for(int64_t B, int64_t C) { return static_cast<unsigned>((B * C + kThreads - 1) / kThreads); }

// Chunked forward (wkv_math.h, "Chunked"). Thread idx = j·B·C + b·C + c: chunk j of channel (b, c);
// consecutive threads still take consecutive channels, so accesses stay coalesced.
struct ChunkGrid {
  int64_t chunk, chunks;
  float* state;  // (3, chunks, B, C): summaries, then (after the scan) the start state of each chunk
};

template <class IO, bool kOutput>
__global__ void chunk_pass_kernel(WkvCudaForward a, ChunkGrid g) {
  const int64_t n = g.chunks * a.B * a.C;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int64_t j = idx / (a.B * a.C), bc = idx % (a.B * a.C), b = bc / a.C, c = bc % a.C;
  const IO* __restrict__ k = static_cast<const IO*>(a.k);
  const IO* __restrict__ v = static_cast<const IO*>(a.v);
  IO* __restrict__ y = static_cast<IO*>(a.y);
  const float w = decay_at(a, c), u = first_at(a, c);
  const int64_t t0 = j * g.chunk, t1 = t0 + g.chunk < a.T ? t0 + g.chunk : a.T;
  // Pass 1 (kOutput false): the chunk's summary from the empty state. Pass 3: y from its start state.
  wkv::State<float> s = kOutput ? wkv::State<float>{g.state[idx], g.state[n + idx], g.state[2 * n + idx]}
                                : wkv::empty_state<float>();
  over_time<kAheadForward>(
      t1 - t0, (b * a.T + t0) * a.C + c, a.C, [&](int64_t o) { return KV{load(k[o]), load(v[o])}; },
      [&](const KV& in, int64_t o) {
        if (kOutput)
          y[o] = store<IO>(wkv::forward_step(s, w, u, in.k, in.v));
        else
          wkv::update(s, w, in.k, in.v);
      });
  if (!kOutput) {
    g.state[idx] = s.aa;
    g.state[n + idx] = s.bb;
    g.state[2 * n + idx] = s.pp;
  }
}

// Pass 2: per (b, c), the start state of every chunk from the summaries, and the final state.
__global__ void chunk_scan_kernel(WkvCudaForward a, ChunkGrid g) {
  const int64_t bc = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (bc >= a.B * a.C) return;
  const int64_t n = g.chunks * a.B * a.C, c = bc % a.C;
  const float w = decay_at(a, c);
  wkv::State<float> s = initial_state(a, bc);
  for (int64_t j = 0, i = bc; j < g.chunks; ++j, i += a.B * a.C) {
    const wkv::State<float> summary{g.state[i], g.state[n + i], g.state[2 * n + i]};
    g.state[i] = s.aa;
    g.state[n + i] = s.bb;
    g.state[2 * n + i] = s.pp;
    const int64_t len = (j + 1) * g.chunk < a.T ? g.chunk : a.T - j * g.chunk;
    s = wkv::advance(s, w, static_cast<float>(len), summary);
  }
  a.aa[bc] = s.aa;
  a.bb[bc] = s.bb;
  a.pp[bc] = s.pp;
}

template <class IO>
cudaError_t launch_chunked(const WkvCudaForward& a, const ChunkGrid& g, cudaStream_t stream) {
  const unsigned pass_blocks = blocks_for(g.chunks * a.B, a.C);
  RWKV_LAUNCH(pass_blocks, kThreads, stream, chunk_pass_kernel<IO, false>)(a, g);
  RWKV_LAUNCH(blocks_for(a.B, a.C), kThreads, stream, chunk_scan_kernel)(a, g);
  RWKV_LAUNCH(pass_blocks, kThreads, stream, chunk_pass_kernel<IO, true>)(a, g);
  return cudaGetLastError();
}

// Chunked backward (wkv_math.h, "Chunked backward"). Threads as in the chunked forward:
// idx = j·B·C + b·C + c for chunk j of channel (b, c); the scans take one thread per (b, c).
// Scratch (floats, n = chunks·B·C): fs (3n) forward summaries, then each chunk's start state;
// adj (5n) adjoint summaries, then each chunk's incoming adjoint; part (2n) each chunk's share of
// ∂L/∂w and ∂L/∂u; final_pp (B·C); start (5·B·C) the adjoint before token 0.
struct BackwardChunks {
  int64_t chunk, chunks;
  float* fs;
  float* adj;
  float* part;
  float* final_pp;
  float* start;

  __device__ __forceinline__ int64_t n(const WkvCudaBackward& a) const { return chunks * a.B * a.C; }
  __device__ __forceinline__ int64_t length(const WkvCudaBackward& a, int64_t j) const {
    return (j + 1) * chunk < a.T ? chunk : a.T - j * chunk;
  }
};

__device__ __forceinline__ void put_adjoint(float* base, int64_t stride, int64_t i, const wkv::Adjoint<float>& q) {
  base[i] = q.a;
  base[stride + i] = q.b;
  base[2 * stride + i] = q.aw;
  base[3 * stride + i] = q.bw;
  base[4 * stride + i] = q.s;
}
__device__ __forceinline__ wkv::Adjoint<float> get_adjoint(const float* base, int64_t stride, int64_t i) {
  return wkv::Adjoint<float>{base[i], base[stride + i], base[2 * stride + i], base[3 * stride + i],
                             base[4 * stride + i]};
}

// Phase 1 (kStates false): the chunk's forward summary from the empty state. Phase 3 (true): the
// state before every step of the chunk into the workspace, from the chunk's start state.
template <class IO, bool kStates>
__global__ void backward_states_kernel(WkvCudaBackward a, BackwardChunks g) {
  const int64_t n = g.n(a);
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int64_t j = idx / (a.B * a.C), bc = idx % (a.B * a.C), b = bc / a.C, c = bc % a.C;
  wkv::State<float> s =
      kStates ? wkv::State<float>{g.fs[idx], g.fs[n + idx], g.fs[2 * n + idx]} : wkv::empty_state<float>();
  state_walk<IO, kStates>(a, g.length(a, j), (b * a.T + j * g.chunk) * a.C + c, decay_at(a, c), s);
  if (!kStates) {
    g.fs[idx] = s.aa;
    g.fs[n + idx] = s.bb;
    g.fs[2 * n + idx] = s.pp;
  }
}

// Phase 2: per (b, c), each chunk's start state from the summaries (replacing them), and the
// final state's exponent, which the adjoint after the last token is scaled by.
__global__ void backward_state_scan_kernel(WkvCudaBackward a, BackwardChunks g) {
  const int64_t bc = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (bc >= a.B * a.C) return;
  const int64_t n = g.n(a);
  const float w = decay_at(a, bc % a.C);
  wkv::State<float> s = initial_state(a, bc);
  for (int64_t j = 0, i = bc; j < g.chunks; ++j, i += a.B * a.C) {
    const wkv::State<float> summary{g.fs[i], g.fs[n + i], g.fs[2 * n + i]};
    g.fs[i] = s.aa;
    g.fs[n + i] = s.bb;
    g.fs[2 * n + i] = s.pp;
    s = wkv::advance(s, w, static_cast<float>(g.length(a, j)), summary);
  }
  g.final_pp[bc] = s.pp;
}

// Phase 4 (kGrads false): the chunk's adjoint summary from the zero adjoint. Phase 6 (true): from
// the chunk's incoming adjoint, ∂L/∂k and ∂L/∂v of its tokens and its shares of ∂L/∂w, ∂L/∂u.
template <class IO, bool kGrads>
__global__ void backward_adjoint_kernel(WkvCudaBackward a, BackwardChunks g) {
  const int64_t n = g.n(a);
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int64_t j = idx / (a.B * a.C), bc = idx % (a.B * a.C), b = bc / a.C, c = bc % a.C;
  const int64_t len = g.length(a, j);
  wkv::Adjoint<float> adj = kGrads ? get_adjoint(g.adj, n, idx) : wkv::empty_adjoint<float>();
  float acc_w = 0.f, acc_u = 0.f;
  adjoint_walk<IO, kGrads>(a, len, (b * a.T + j * g.chunk + len - 1) * a.C + c, decay_at(a, c), first_at(a, c), adj,
                           acc_w, acc_u);
  if (kGrads) {
    g.part[idx] = acc_w;
    g.part[n + idx] = acc_u;
  } else {
    put_adjoint(g.adj, n, idx, adj);
  }
}

// Phase 5: per (b, c), from the adjoint after the last token back over the chunks, each chunk's
// incoming adjoint (replacing its summary), and the adjoint before token 0.
__global__ void backward_adjoint_scan_kernel(WkvCudaBackward a, BackwardChunks g) {
  const int64_t bc = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (bc >= a.B * a.C) return;
  const int64_t n = g.n(a);
  const float w = decay_at(a, bc % a.C);
  wkv::State<float> final_state{0.f, 0.f, g.final_pp[bc]};
  wkv::Adjoint<float> adj = adjoint_after_last(a, final_state, bc);
  for (int64_t j = g.chunks - 1; j >= 0; --j) {
    const int64_t i = j * a.B * a.C + bc;
    const wkv::Adjoint<float> summary = get_adjoint(g.adj, n, i);
    put_adjoint(g.adj, n, i, adj);
    adj = wkv::advance_adjoint(adj, w, static_cast<float>(g.length(a, j)), summary);
  }
  put_adjoint(g.start, a.B * a.C, bc, adj);
}

// Phase 7: per (b, c), ∂L/∂w and ∂L/∂u summed over the chunks (in chunk order), and the initial
// state's gradients and share of ∂L/∂w.
__global__ void backward_finish_kernel(WkvCudaBackward a, BackwardChunks g) {
  const int64_t bc = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (bc >= a.B * a.C) return;
  const int64_t n = g.n(a);
  float acc_w = 0.f, acc_u = 0.f;
  for (int64_t j = 0, i = bc; j < g.chunks; ++j, i += a.B * a.C) {
    acc_w += g.part[i];
    acc_u += g.part[n + i];
  }
  initial_state_grads(a, get_adjoint(g.start, a.B * a.C, bc), bc, acc_w);
  a.gw[bc] = acc_w;
  a.gu[bc] = acc_u;
}

template <class IO>
cudaError_t launch_backward_chunked(const WkvCudaBackward& a, const BackwardChunks& g, cudaStream_t stream) {
  const unsigned chunk_blocks = blocks_for(g.chunks * a.B, a.C), bc_blocks = blocks_for(a.B, a.C);
  RWKV_LAUNCH(chunk_blocks, kThreads, stream, backward_states_kernel<IO, false>)(a, g);
  RWKV_LAUNCH(bc_blocks, kThreads, stream, backward_state_scan_kernel)(a, g);
  RWKV_LAUNCH(chunk_blocks, kThreads, stream, backward_states_kernel<IO, true>)(a, g);
  RWKV_LAUNCH(chunk_blocks, kThreads, stream, backward_adjoint_kernel<IO, false>)(a, g);
  RWKV_LAUNCH(bc_blocks, kThreads, stream, backward_adjoint_scan_kernel)(a, g);
  RWKV_LAUNCH(chunk_blocks, kThreads, stream, backward_adjoint_kernel<IO, true>)(a, g);
  RWKV_LAUNCH(bc_blocks, kThreads, stream, backward_finish_kernel)(a, g);
  RWKV_LAUNCH(blocks_for(1, a.C), kThreads, stream, parameter_grads_kernel)(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t wkv_forward(WkvIo io, const WkvCudaForward& args, cudaStream_t stream) {
  const unsigned blocks = blocks_for(args.B, args.C);
  if (io == WkvIo::bf16)
    RWKV_LAUNCH(blocks, kThreads, stream, forward_kernel<__nv_bfloat16>)(args);
  else
    RWKV_LAUNCH(blocks, kThreads, stream, forward_kernel<float>)(args);
  return cudaGetLastError();
}

cudaError_t wkv_forward_chunked(WkvIo io, const WkvCudaForward& args, int64_t chunk, float* chunk_state,
                                cudaStream_t stream) {
  const ChunkGrid g{chunk, (args.T + chunk - 1) / chunk, chunk_state};
  return io == WkvIo::bf16 ? launch_chunked<__nv_bfloat16>(args, g, stream) : launch_chunked<float>(args, g, stream);
}

cudaError_t wkv_backward(WkvIo io, const WkvCudaBackward& args, cudaStream_t stream) {
  const unsigned blocks = blocks_for(args.B, args.C);
  if (io == WkvIo::bf16)
    RWKV_LAUNCH(blocks, kThreads, stream, backward_kernel<__nv_bfloat16>)(args);
  else
    RWKV_LAUNCH(blocks, kThreads, stream, backward_kernel<float>)(args);
  RWKV_LAUNCH(blocks_for(1, args.C), kThreads, stream, parameter_grads_kernel)(args);
  return cudaGetLastError();
}

int64_t wkv_backward_chunked_scratch(const WkvCudaBackward& args, int64_t chunk) {
  const int64_t chunks = (args.T + chunk - 1) / chunk, n = chunks * args.B * args.C;
  return 10 * n + 6 * args.B * args.C;
}

cudaError_t wkv_backward_chunked(WkvIo io, const WkvCudaBackward& args, int64_t chunk, float* scratch,
                                 cudaStream_t stream) {
  const int64_t chunks = (args.T + chunk - 1) / chunk, n = chunks * args.B * args.C, bc = args.B * args.C;
  const BackwardChunks g{chunk, chunks, scratch, scratch + 3 * n, scratch + 8 * n, scratch + 10 * n,
                         scratch + 10 * n + bc};
  return io == WkvIo::bf16 ? launch_backward_chunked<__nv_bfloat16>(args, g, stream)
                           : launch_backward_chunked<float>(args, g, stream);
}

}  // namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE
