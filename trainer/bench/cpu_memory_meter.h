#pragma once
// Measures the bytes LibTorch tensors hold in CPU memory: while a CpuMemoryMeter lives, the CPU
// allocator is a counting one (same malloc underneath), so current() and peak() are the exact sums
// of live tensor storages allocated since it was installed — what the memory planner
// (trainer/dist/memory_plan.h) estimates, without the noise of RSS (malloc caching, the libtorch image).
// Memory outside tensors (BLAS scratch, the autograd graph's own nodes) is not counted.
// One meter at a time; tensors allocated under it may outlive it.
#include <cstdint>

namespace c10 { struct Allocator; }

namespace rwkv::trainer {

class CpuMemoryMeter {
 public:
  CpuMemoryMeter();   // installs the counting allocator; throws if another meter is alive
  ~CpuMemoryMeter();  // puts the previous CPU allocator back
  CpuMemoryMeter(const CpuMemoryMeter&) = delete;
  CpuMemoryMeter& operator=(const CpuMemoryMeter&) = delete;

  // Bytes of storages allocated under this meter and still alive, and their maximum since the
  // meter started or since reset_peak().
  int64_t current() const;
  int64_t peak() const;
  void reset_peak();

 private:
  c10::Allocator* previous_;
};

}  // namespace rwkv::trainer
