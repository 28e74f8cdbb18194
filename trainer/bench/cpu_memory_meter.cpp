#include "trainer/bench/cpu_memory_meter.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace rwkv::trainer {
namespace {

// Context == data pointer (a "simple" DataPtr with a raw deleter), as the default CPU allocator
// hands out, so code using the raw allocate/deallocate interface keeps working. Sizes are kept by
// pointer because the deleter only gets the pointer.
class CountingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    void* p = c10::alloc_cpu(n);
    if (p) {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[p] = n;
      current_ += static_cast<int64_t>(n);
      peak_ = std::max(peak_, current_);
    }
    return {p, p, &deallocate, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &deallocate; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  int64_t current() {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
  }
  int64_t peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = current_;
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = current_ = 0;
    sizes_.clear();
  }
  bool installed = false;

 private:
  static void deallocate(void* p);
  std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;
  int64_t current_ = 0, peak_ = 0;
};

// Never destroyed: storages allocated by it may be freed at any later time, even at exit.
CountingCpuAllocator& counting() {
  static auto* a = new CountingCpuAllocator;
  return *a;
}

void CountingCpuAllocator::deallocate(void* p) {
  if (!p) return;
  CountingCpuAllocator& a = counting();
  {
    std::lock_guard<std::mutex> lock(a.mutex_);
    const auto it = a.sizes_.find(p);
    if (it != a.sizes_.end()) {  // absent: allocated under an earlier meter, after reset()
      a.current_ -= static_cast<int64_t>(it->second);
      a.sizes_.erase(it);
    }
  }
  c10::free_cpu(p);
}

// Above the default allocator's registration priority (0), so the swap always takes effect.
constexpr uint8_t kPriority = 255;

}  // namespace

CpuMemoryMeter::CpuMemoryMeter() : previous_(c10::GetCPUAllocator()) {
  CountingCpuAllocator& a = counting();
  if (a.installed) throw std::logic_error("CpuMemoryMeter: only one meter may be alive at a time");
  a.reset();
  a.installed = true;
  c10::SetCPUAllocator(&a, kPriority);
}

CpuMemoryMeter::~CpuMemoryMeter() {
  c10::SetCPUAllocator(previous_, kPriority);
  counting().installed = false;
}

int64_t CpuMemoryMeter::current() const { return counting().current(); }
int64_t CpuMemoryMeter::peak() const { return counting().peak(); }
void CpuMemoryMeter::reset_peak() { counting().reset_peak(); }

}  // namespace rwkv::trainer
