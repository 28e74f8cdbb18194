// CUDA's execution model on the host (kernels/host_cuda.h), which the host-run kernel tests rest
// on: every thread of a launch runs once with its own indices, a launch CUDA would refuse runs
// nothing and reports the error, and bf16 conversion rounds as cuda_bf16.h (against c10::BFloat16,
// whose conversion is round-to-nearest-even as well).
#include <c10/util/BFloat16.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "kernels/host_cuda.h"
#include "tests/support/test_util.h"

namespace {

namespace host = rwkv::kernels::host;

struct Visit {
  host::uint3 block, thread;
  host::dim3 grid_dim, block_dim;
};

void record(std::vector<Visit>* out) {
  out->push_back({host::blockIdx, host::threadIdx, host::gridDim, host::blockDim});
}

std::tuple<unsigned, unsigned, unsigned, unsigned, unsigned, unsigned> key(const Visit& v) {
  return {v.block.x, v.block.y, v.block.z, v.thread.x, v.thread.y, v.thread.z};
}

uint16_t bits(c10::BFloat16 h) { return h.x; }

}  // namespace

TEST_CASE("host launch runs every thread of a 3-D grid once, with its indices and dimensions", "[kernels]") {
  const host::dim3 grid(3, 2, 2), block(5, 3, 2);
  std::vector<Visit> visits;
  host::Launch(grid, block, nullptr, record)(&visits);
  REQUIRE(host::cudaGetLastError() == host::cudaSuccess);
  REQUIRE(visits.size() == 3u * 2 * 2 * 5 * 3 * 2);
  std::set<decltype(key(visits[0]))> seen;
  for (const Visit& v : visits) {
    CHECK(v.grid_dim.x == 3);
    CHECK(v.grid_dim.z == 2);
    CHECK(v.block_dim.y == 3);
    CHECK(v.block.x < 3);
    CHECK(v.block.y < 2);
    CHECK(v.block.z < 2);
    CHECK(v.thread.x < 5);
    CHECK(v.thread.y < 3);
    CHECK(v.thread.z < 2);
    seen.insert(key(v));
  }
  CHECK(seen.size() == visits.size());
  // Not in program order (host_cuda.h): the last thread of the last block runs first.
  CHECK(key(visits.front()) == std::make_tuple(2u, 1u, 1u, 4u, 2u, 1u));
}

TEST_CASE("host launch refuses what CUDA refuses: nothing runs, cudaGetLastError reports it once", "[kernels]") {
  for (const auto& [grid, block] : {std::pair{host::dim3(0), host::dim3(128)}, {host::dim3(4), host::dim3(1025)},
                                    {host::dim3(1, 70000), host::dim3(32)}, {host::dim3(1), host::dim3(32, 32, 2)}}) {
    std::vector<Visit> visits;
    host::Launch(grid, block, nullptr, record)(&visits);
    CHECK(visits.empty());
    CHECK(host::cudaGetLastError() == host::cudaErrorInvalidConfiguration);
    CHECK(host::cudaGetLastError() == host::cudaSuccess);
  }
}

TEST_CASE("host bf16 converts as CUDA: round to nearest even, every bf16 value exact", "[kernels]") {
  // Every bf16 value survives bf16 → float → bf16 (NaNs become the canonical 0x7fff).
  int wrong = 0;
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = host::__bfloat162float(host::__nv_bfloat16{static_cast<uint16_t>(b)});
    const uint16_t back = host::__float2bfloat16_rn(f).bits;
    wrong += std::bit_cast<uint32_t>(f) != b << 16 || back != (std::isnan(f) ? 0x7fff : b);
  }
  CHECK(wrong == 0);
  // Ties go to the even neighbour; just above a tie rounds up; the largest float overflows to inf.
  CHECK(host::__float2bfloat16_rn(std::bit_cast<float>(0x3f808000u)).bits == 0x3f80);
  CHECK(host::__float2bfloat16_rn(std::bit_cast<float>(0x3f818000u)).bits == 0x3f82);
  CHECK(host::__float2bfloat16_rn(std::bit_cast<float>(0x3f808001u)).bits == 0x3f81);
  CHECK(host::__float2bfloat16_rn(std::bit_cast<float>(0xbf808000u)).bits == 0xbf80);
  CHECK(host::__float2bfloat16_rn(std::numeric_limits<float>::max()).bits == 0x7f80);
  // Random bit patterns, subnormals and infinities included, as c10::BFloat16.
  std::mt19937 gen(7);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(gen()));
    if (std::isnan(f)) continue;
    CAPTURE(std::bit_cast<uint32_t>(f));
    REQUIRE(host::__float2bfloat16_rn(f).bits == bits(c10::BFloat16(f)));
  }
}
