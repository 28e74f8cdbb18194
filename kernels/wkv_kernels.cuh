#pragma once
// The WKV CUDA kernels and their launch sites, one source for two builds: nvcc compiles it in
// kernels/wkv_cuda.cu (declared by kernels/wkv_cuda.h), g++ in kernels/wkv_host.cpp through
// kernels/kernel_shim.h (declared by kernels/wkv_host.h), where the tests run it on the CPU.
//
// One thread per (b, c), as the reference kernel; consecutive threads take consecutive channels,
// so every load and store at a given t is coalesced. Per-thread storage is a few registers: the
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

template <class IO>
__global__ void forward_kernel(WkvCudaForward a) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.B * a.C) return;
  const int64_t b = idx / a.C, c = idx % a.C;
  const IO* __restrict__ k = static_cast<const IO*>(a.k);
  const IO* __restrict__ v = static_cast<const IO*>(a.v);
  IO* __restrict__ y = static_cast<IO*>(a.y);
  const float w = a.w[c], u = a.u[c];
  wkv::State<float> s{a.aa[idx], a.bb[idx], a.pp[idx]};
  for (int64_t t = 0, o = b * a.T * a.C + c; t < a.T; ++t, o += a.C)
    y[o] = store<IO>(wkv::forward_step(s, w, u, load(k[o]), load(v[o])));
  a.aa[idx] = s.aa;
  a.bb[idx] = s.bb;
  a.pp[idx] = s.pp;
}

template <class IO>
__global__ void backward_kernel(WkvCudaBackward a) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.B * a.C) return;
  const int64_t b = idx / a.C, c = idx % a.C;
  const IO* __restrict__ k = static_cast<const IO*>(a.k);
  const IO* __restrict__ v = static_cast<const IO*>(a.v);
  const IO* __restrict__ gy = static_cast<const IO*>(a.gy);
  IO* __restrict__ gk = static_cast<IO*>(a.gk);
  IO* __restrict__ gv = static_cast<IO*>(a.gv);
  const int64_t plane = a.B * a.T * a.C;
  float* __restrict__ ws_aa = a.workspace;
  float* __restrict__ ws_bb = ws_aa + plane;
  float* __restrict__ ws_pp = ws_bb + plane;
  const float w = a.w[c], u = a.u[c];
  const int64_t first = b * a.T * a.C + c;

  // Pass 1 (forward): the state before every step.
  wkv::State<float> s{a.aa0[idx], a.bb0[idx], a.pp0[idx]};
  for (int64_t t = 0, o = first; t < a.T; ++t, o += a.C) {
    ws_aa[o] = s.aa;
    ws_bb[o] = s.bb;
    ws_pp[o] = s.pp;
    wkv::update(s, w, load(k[o]), load(v[o]));
  }
  // Pass 2 (reverse): every gradient.
  wkv::Adjoint<float> adj = wkv::adjoint_from_final(s, a.g_aa_T[idx], a.g_bb_T[idx]);
  float acc_w = 0.f, acc_u = 0.f;
  for (int64_t t = a.T - 1, o = first + (a.T - 1) * a.C; t >= 0; --t, o -= a.C) {
    float dk, dv;
    wkv::backward_step(wkv::State<float>{ws_aa[o], ws_bb[o], ws_pp[o]}, adj, w, u, load(k[o]), load(v[o]),
                       load(gy[o]), dk, dv, acc_w, acc_u);
    gk[o] = store<IO>(dk);
    gv[o] = store<IO>(dv);
  }
  wkv::backward_initial(wkv::State<float>{a.aa0[idx], a.bb0[idx], a.pp0[idx]}, adj, a.g_aa0[idx], a.g_bb0[idx],
                        a.g_pp0[idx], acc_w);
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
  const float w = a.w[c], u = a.u[c];
  const int64_t t0 = j * g.chunk, t1 = t0 + g.chunk < a.T ? t0 + g.chunk : a.T;
  // Pass 1 (kOutput false): the chunk's summary from the empty state. Pass 3: y from its start state.
  wkv::State<float> s = kOutput ? wkv::State<float>{g.state[idx], g.state[n + idx], g.state[2 * n + idx]}
                                : wkv::empty_state<float>();
  for (int64_t t = t0, o = (b * a.T + t0) * a.C + c; t < t1; ++t, o += a.C) {
    if (kOutput)
      y[o] = store<IO>(wkv::forward_step(s, w, u, load(k[o]), load(v[o])));
    else
      wkv::update(s, w, load(k[o]), load(v[o]));
  }
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
  const float w = a.w[c];
  wkv::State<float> s{a.aa[bc], a.bb[bc], a.pp[bc]};
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
  return cudaGetLastError();
}

}  // namespace rwkv::kernels::RWKV_KERNEL_NAMESPACE
