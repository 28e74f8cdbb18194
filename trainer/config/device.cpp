#include "trainer/config/device.h"

#include <optional>
#include <stdexcept>

namespace rwkv::trainer {

torch::Device resolve_device(const std::string& request, int local_rank) {
  const auto gpus = static_cast<int>(torch::cuda::device_count());
  const auto local_gpu = [&] { return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % gpus)); };
  if (request == "auto") return gpus > 0 ? local_gpu() : torch::Device(torch::kCPU);
  std::optional<torch::Device> dev;
  try {
    dev.emplace(request);
  } catch (const c10::Error&) {
  }
  if (!dev || !(dev->is_cpu() || dev->is_cuda()) || (dev->is_cpu() && dev->has_index()))
    throw std::invalid_argument("'" + request + "': expected auto, cpu, cuda or cuda:N");
  if (dev->is_cpu()) return *dev;
  if (gpus == 0) throw std::invalid_argument("'" + request + "': torch sees no CUDA device");
  if (!dev->has_index()) return local_gpu();
  if (dev->index() >= gpus)
    throw std::invalid_argument("'" + request + "': torch sees " + std::to_string(gpus) + " CUDA device(s)");
  return *dev;
}

}  // namespace rwkv::trainer
