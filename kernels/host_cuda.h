#pragma once
// CUDA's execution model on the host, for running kernel sources (kernels/*.cuh) compiled by g++:
// the launch geometry (dim3, blockIdx, threadIdx, blockDim, gridDim), a launcher that replaces
// `kernel<<<grid, block, 0, stream>>>(args)`, the launch-error status, and the bf16 type with
// CUDA's conversions. Everything lives in rwkv::kernels::host, so it never meets the real CUDA
// headers' names; kernels/kernel_shim.h maps the CUDA keywords onto it.
//
// A host launch is correct only for kernels whose threads are independent: no shared memory,
// barriers, warp intrinsics or atomics (kernels/README.md "Host execution"). It runs every thread
// to completion, one after another, on the calling thread, last block and last thread first:
// CUDA promises no order, and program order would hide a thread that reads what another thread
// of the same launch writes.
#include <bit>
#include <cstdint>

namespace rwkv::kernels::host {

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Per launching thread, so that host launches from several threads do not see each other's indices.
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// The codes a host launch can produce, with the CUDA runtime's values.
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9 };
// Host launches are synchronous: a stream is only a name.
using cudaStream_t = struct HostStream*;

inline thread_local cudaError_t last_launch_error = cudaSuccess;

// As the CUDA runtime: the error of the last failed launch, then cleared.
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = last_launch_error;
  last_launch_error = cudaSuccess;
  return e;
}

// The limits of every GPU since compute capability 3.0: a failing launch runs nothing.
constexpr bool valid_launch(const dim3& grid, const dim3& block) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  return grid.x >= 1 && grid.x <= 0x7fffffffu && grid.y >= 1 && grid.y <= 65535 && grid.z >= 1 &&
         grid.z <= 65535 && block.x >= 1 && block.x <= 1024 && block.y >= 1 && block.y <= 1024 && block.z >= 1 &&
         block.z <= 64 && threads <= 1024;
}

// `Launch(grid, block, stream, kernel)(args...)` runs kernel(args...) once per thread of the grid.
template <class... Params>
class Launch {
 public:
  Launch(dim3 grid, dim3 block, cudaStream_t /*stream*/, void (*kernel)(Params...))
      : grid_(grid), block_(block), kernel_(kernel) {}

  template <class... Args>
  void operator()(const Args&... args) const {
    if (!valid_launch(grid_, block_)) {
      last_launch_error = cudaErrorInvalidConfiguration;
      return;
    }
    gridDim = grid_;
    blockDim = block_;
    for (unsigned bz = grid_.z; bz-- > 0;)
      for (unsigned by = grid_.y; by-- > 0;)
        for (unsigned bx = grid_.x; bx-- > 0;) {
          blockIdx = uint3{bx, by, bz};
          for (unsigned tz = block_.z; tz-- > 0;)
            for (unsigned ty = block_.y; ty-- > 0;)
              for (unsigned tx = block_.x; tx-- > 0;) {
                threadIdx = uint3{tx, ty, tz};
                kernel_(args...);
              }
        }
  }

 private:
  dim3 grid_, block_;
  void (*kernel_)(Params...);
};

// bf16 as cuda_bf16.h stores it: the upper 16 bits of an IEEE float (the layout of at::BFloat16).
struct __nv_bfloat16 {
  uint16_t bits;
};
static_assert(sizeof(__nv_bfloat16) == 2);

inline float __bfloat162float(__nv_bfloat16 h) { return std::bit_cast<float>(uint32_t{h.bits} << 16); }

// Round to nearest, ties to even, as cuda_bf16.h: NaN becomes the canonical NaN 0x7fff,
// overflow rounds to ±inf.
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fff};
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return __nv_bfloat16{static_cast<uint16_t>(rounded >> 16)};
}

}  // namespace rwkv::kernels::host
