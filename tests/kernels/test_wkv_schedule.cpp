// The WKV schedule (kernels/wkv_schedule.h): its cycle model against hand counts of the launches in
// kernels/wkv_kernels.cuh, where the policy chooses the chunked kernels (and that its choice is the
// model's best), and RWKV_WKV_CHUNK's parsing. A model, not a speed: nothing here is timed.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "kernels/wkv_schedule.h"

namespace {

using rwkv::kernels::WkvCycles;
using rwkv::kernels::WkvGpu;
using rwkv::kernels::WkvShape;

// A GPU whose walks are bound by their chain alone: 10 cycles a step, issue and bandwidth unbounded
// in effect.
WkvGpu chain_only(int64_t resident) {
  WkvGpu g;
  g.sms = 1;
  g.resident_threads = resident;
  g.cycles_per_step = 10;
  g.issue_per_sm_cycle = 1e15;
  g.bytes_per_sm_cycle = 1e15;
  return g;
}

double total(const WkvCycles& c) { return c.forward + c.backward; }

}  // namespace

TEST_CASE("wkv schedule: the sequential kernels' chain is waves × T × cycles, three walks a step", "[kernels]") {
  const WkvShape s{2, 100, 3, 2};  // 6 threads
  // All resident: one wave. Forward one walk of 100 steps; backward the state walk and the reverse.
  const WkvCycles one = rwkv::kernels::wkv_cycles(s, 0, chain_only(8));
  CHECK(one.forward == 1000);
  CHECK(one.backward == 2000);
  // 4 resident: two waves.
  const WkvCycles two = rwkv::kernels::wkv_cycles(s, 0, chain_only(4));
  CHECK(two.forward == 2000);
  CHECK(two.backward == 4000);
  // A chunk of T or more is the sequential kernels (kernels/wkv_op_cuda.cpp runs them then).
  CHECK(total(rwkv::kernels::wkv_cycles(s, 100, chain_only(8))) == total(one));
  CHECK(total(rwkv::kernels::wkv_cycles(s, 500, chain_only(8))) == total(one));
}

TEST_CASE("wkv schedule: the chunked kernels' chain is chunk walks plus scans over the chunks", "[kernels]") {
  // T = 10 in chunks of 4: 3 chunks (4, 4, 2). 1 × 1 channel, 3 chunk threads, all resident.
  const WkvShape s{1, 10, 1, 4};
  const WkvCycles c = rwkv::kernels::wkv_cycles(s, 4, chain_only(8));
  // Forward: summaries (4 steps), the scan (3 chunks), outputs (4).
  CHECK(c.forward == 10 * (4 + 3 + 4));
  // Backward (launch_backward_chunked): summaries 4, scan 3, states 4, adjoint summaries 4, reverse
  // scan 3, gradients 4, the sums over chunks 3.
  CHECK(c.backward == 10 * (4 + 3 + 4 + 4 + 3 + 4 + 3));
  // Two resident threads: each chunk walk takes two waves, the per-channel scans one.
  const WkvCycles w = rwkv::kernels::wkv_cycles(s, 4, chain_only(2));
  CHECK(w.forward == 10 * (8 + 3 + 8));
  CHECK(w.backward == 10 * (8 + 3 + 8 + 8 + 3 + 8 + 3));
}

TEST_CASE("wkv schedule: a launch is bound by its issue or its traffic when they outlast its chain", "[kernels]") {
  const WkvShape s{4, 64, 32, 2};  // 128 threads, 8192 elements of 2 bytes
  WkvGpu g = chain_only(1 << 20);
  g.cycles_per_step = 0;
  g.sms = 2;
  g.issue_per_sm_cycle = 64;
  // Issue: the forward walk is 128 threads × 64 steps × 66 instructions over 2 × 64 per cycle.
  CHECK(rwkv::kernels::wkv_cycles(s, 0, g).forward == Approx(128.0 * 64 * 66 / 128).epsilon(1e-12));
  // Traffic: k and v read, y written, 8192 × 3 × 2 bytes over 2 SMs × 3 bytes a cycle.
  g.issue_per_sm_cycle = 1e15;
  g.bytes_per_sm_cycle = 3;
  CHECK(rwkv::kernels::wkv_cycles(s, 0, g).forward == Approx(8192.0 * 6 / 6).epsilon(1e-12));
  // The backward reads the states it stored: more bytes an element than the forward.
  CHECK(rwkv::kernels::wkv_cycles(s, 0, g).backward > rwkv::kernels::wkv_cycles(s, 0, g).forward);
}

TEST_CASE("wkv schedule: the policy chunks long contexts at small batches, and only where it pays", "[kernels]") {
  const WkvGpu h100 = rwkv::kernels::assumed_wkv_gpu();
  const auto best_by_hand = [&](const WkvShape& s) {
    int64_t best = 0;
    double cycles = total(rwkv::kernels::wkv_cycles(s, 0, h100)) / rwkv::kernels::kWkvChunkMargin;
    for (const int64_t n : rwkv::kernels::kWkvChunkCandidates)
      if (n < s.T && total(rwkv::kernels::wkv_cycles(s, n, h100)) < cycles) {
        best = n;
        cycles = total(rwkv::kernels::wkv_cycles(s, n, h100));
      }
    return best;
  };
  SECTION("the context-extension stages: 169M and 1.5B at ctx 8192, one sequence") {
    for (const int64_t C : {768, 2048}) {
      const WkvShape s{1, 8192, C, 2};
      const int64_t chunk = rwkv::kernels::wkv_choose_chunk(s, h100);
      INFO("C " << C << " chunk " << chunk);
      CHECK(chunk > 0);
      CHECK(chunk == best_by_hand(s));
      // Its modeled gain: more than the margin (the walk of 8192 steps is the sequential's bound).
      CHECK(total(rwkv::kernels::wkv_cycles(s, chunk, h100)) * rwkv::kernels::kWkvChunkMargin <
            total(rwkv::kernels::wkv_cycles(s, 0, h100)));
    }
  }
  SECTION("as the batch grows at a fixed context, chunking stops once, and never resumes") {
    bool stopped = false;
    for (int64_t B = 1; B <= 256; B *= 2) {
      const int64_t chunk = rwkv::kernels::wkv_choose_chunk({B, 4096, 768, 2}, h100);
      INFO("B " << B << " chunk " << chunk);
      CHECK(chunk == best_by_hand({B, 4096, 768, 2}));
      if (stopped) CHECK(chunk == 0);
      stopped = stopped || chunk == 0;
    }
    CHECK(stopped);
  }
  SECTION("sequential where every (b, c) thread is resident and T is short, or T fits in one chunk") {
    CHECK(rwkv::kernels::wkv_choose_chunk({16, 1024, 768, 2}, h100) == 0);  // 169M's pretraining shape
    CHECK(rwkv::kernels::wkv_choose_chunk({256, 1024, 768, 2}, h100) == 0);  // more threads than resident
    CHECK(rwkv::kernels::wkv_choose_chunk({1, 32, 64, 2}, h100) == 0);      // no candidate below T
  }
}

TEST_CASE("wkv schedule: a forced chunk runs as given below T, as the sequential kernels from T on", "[kernels]") {
  const WkvGpu h100 = rwkv::kernels::assumed_wkv_gpu();
  const WkvShape s{1, 8192, 768, 2};
  CHECK(rwkv::kernels::wkv_chunk_for(s, std::nullopt, h100) == rwkv::kernels::wkv_choose_chunk(s, h100));
  CHECK(rwkv::kernels::wkv_chunk_for(s, 0, h100) == 0);
  CHECK(rwkv::kernels::wkv_chunk_for(s, 333, h100) == 333);
  CHECK(rwkv::kernels::wkv_chunk_for(s, 8191, h100) == 8191);
  CHECK(rwkv::kernels::wkv_chunk_for(s, 8192, h100) == 0);
  CHECK(rwkv::kernels::wkv_chunk_for(s, 100000, h100) == 0);
}

TEST_CASE("wkv schedule: RWKV_WKV_CHUNK is auto, a count of tokens, or an error naming it", "[kernels]") {
  CHECK_FALSE(rwkv::kernels::wkv_chunk_override(nullptr).has_value());
  CHECK_FALSE(rwkv::kernels::wkv_chunk_override("").has_value());
  CHECK_FALSE(rwkv::kernels::wkv_chunk_override("auto").has_value());
  CHECK(rwkv::kernels::wkv_chunk_override("0") == 0);
  CHECK(rwkv::kernels::wkv_chunk_override("256") == 256);
  for (const char* bad : {"-1", "x", "12x", " 5", "+5", "1e3", "99999999999999999999999"}) {
    INFO(bad);
    CHECK_THROWS_WITH(rwkv::kernels::wkv_chunk_override(bad), Catch::Contains("RWKV_WKV_CHUNK") && Catch::Contains(bad));
  }
}
