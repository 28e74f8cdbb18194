#pragma once
// Refuses, before anything is allocated, a run whose memory need cannot fit where it runs: a
// huge model.n_layer / n_embd / vocab_size or train.micro_batch would otherwise fail deep inside
// an allocation (an out-of-memory error naming no field) or, on Linux, be killed by the kernel's
// OOM killer with no message at all once the pages are touched.
//
// The need is `rwkv plan`'s estimate (trainer/dist/memory_plan.h) for this config: model state
// under the run's train.zero_stage over its ranks, plus the activations of one micro-batch of
// the stage that needs most (its micro_batch, ctx_len and segment, activation checkpointing or
// not). That estimate is within −29%…+1% of measured peaks (tests/rwkv/test_block_recompute.cpp),
// so it errs low: a refused run could not have run.
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>

#include "trainer/config/run_config.h"

namespace rwkv::trainer {

// Memory a run may still use, and where the figure comes from (for the message).
struct AvailableMemory {
  double bytes = 0;
  std::string source;  // e.g. "MemAvailable + SwapFree in /proc/meminfo"
};

// This host's: MemAvailable + SwapFree (/proc/meminfo), capped by a cgroup v2 memory.max less
// memory.current when one is set. nullopt where neither can be read.
std::optional<AvailableMemory> host_available_memory();
// A CUDA device's free memory (cudaMemGetInfo). nullopt without CUDA or such a device.
std::optional<AvailableMemory> device_available_memory(const torch::Device& device);

// The estimated peak bytes one rank of `config` needs on `device` with `world_size` ranks, and
// the stage (index into config.stages) that needs most.
struct RunMemoryNeed {
  double bytes = 0;
  double weights = 0, grads = 0, master = 0, adam = 0, buffers = 0, activations = 0;  // of that stage's estimate
  size_t stage = 0;
};
RunMemoryNeed run_memory_need(const RunConfig& config, const torch::Device& device, int world_size);

// Throws ConfigError naming the config file, the model's shape fields, the micro-batch and
// context of the stage that needs most, the estimate's parts and the memory available, when
// need × `ranks_here` (ranks sharing this host's memory on CPU; 1 on a GPU, which is each rank's
// own) exceeds it. Does nothing where the available memory cannot be read.
void check_run_fits(const RunConfig& config, const torch::Device& device, int world_size, int ranks_here,
                    const std::optional<AvailableMemory>& available);
// The same with what this process sees: a GPU's free memory (each rank has its own), or this
// host's for a CPU run shared by LOCAL_WORLD_SIZE ranks (torchrun sets it; 1 when unset).
void check_run_fits(const RunConfig& config, const torch::Device& device, int world_size);

}  // namespace rwkv::trainer
