#pragma once
// The one place a device request becomes a torch::Device: `train.device` of a run config and
// `--device` of generate, eval and every bench.
#include <torch/torch.h>

#include <string>

namespace rwkv::trainer {

// `request`: "auto" (CUDA when torch sees a device, else the CPU), "cpu", "cuda" (the local
// rank's GPU: `local_rank` modulo the visible count, since a launcher that binds one GPU per task,
// e.g. Slurm --gpus-per-task=1, leaves every rank a single device 0) or "cuda:N". Throws
// std::invalid_argument "'<request>': expected auto, cpu, cuda or cuda:N" or "'<request>': torch
// sees no CUDA device"; callers prefix where the request came from (a flag, a config field).
torch::Device resolve_device(const std::string& request, int local_rank = 0);

}  // namespace rwkv::trainer
