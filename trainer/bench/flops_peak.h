#pragma once
// The peak FLOP rate that MFU is measured against (rwkv/README.md "Shapes" counts 6(13LD² + VD) FLOPs
// per trained token). Two sources, and every caller says which one it used:
//   measured: the achieved rate of the model's own matrix products timed alone, at the run's
//             token count, device and dtype: what the training step could reach if nothing but
//             its GEMMs ran (the CPU's only meaningful peak; a vendor figure does not exist there);
//   table:    the vendor's dense bf16 peak of a known CUDA device (the usual MFU denominator).
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "rwkv/model_config.h"

namespace rwkv::trainer {

// A weight W of shape (out, in) used as y = x·Wᵀ, `count` times per forward pass.
struct GemmShape {
  int64_t in, out, count;
};

// The distinct weight shapes of one forward pass of `config`: D×A (×3: key, value, receptance)
// and A×D (output) per layer in time-mix, D×D, D×F, F×D per layer in channel-mix, and the head D×V.
std::vector<GemmShape> model_gemm_shapes(const ModelConfig& config);

struct GemmRate {
  double median_tflops = 0, min_tflops = 0, max_tflops = 0;
  int runs = 0;
};

// Times the three products of training for every shape (y = x·Wᵀ, ∂x = ∂y·W, ∂W = ∂yᵀ·x, each
// 2·tokens·in·out FLOPs), `tokens` rows of x, on `options`' device and dtype. One run covers every
// shape once, its time weighted by the shape's count, so the rate is that of one step's GEMMs in
// their real proportions. `warmup` untimed runs first; the rate of each timed run is kept.
GemmRate measure_gemm_rate(const ModelConfig& config, int64_t tokens, const torch::TensorOptions& options,
                           int runs = 5, int warmup = 1);

// The device's achievable memory bandwidth, the cost model's (trainer/bench/cost_model.h): one
// buffer of `bytes` copied into another, `runs` timed copies after `warmup`; GB/s counts the bytes
// read and written (2 × bytes a copy), as the kernel census counts a kernel's traffic.
struct Bandwidth {
  double median_gbs = 0, min_gbs = 0, max_gbs = 0;
  int runs = 0;
};
Bandwidth measure_copy_bandwidth(int64_t bytes, const torch::Device& device, int runs = 5, int warmup = 1);

// Dense (no sparsity) bf16 tensor-core peak in TFLOP/s of a CUDA device known by name
// (cudaDeviceProp::name, e.g. "NVIDIA H100 80GB HBM3" → 989); none when unknown.
std::optional<double> known_bf16_peak_tflops(const std::string& device_name);

struct PeakEstimate {
  double tflops = 0;
  std::string source;  // how it was found, for the log: "table: NVIDIA H100 ... dense bf16" or "measured: ..."
};

// What `log.peak_tflops: auto` resolves to on `device`: on CUDA the table's figure when the device
// is known, else (and always on the CPU) the measured GEMM rate at the model's shapes with `tokens`
// rows (bf16 on CUDA, fp32 on the CPU, as the training step computes).
PeakEstimate auto_peak(const ModelConfig& config, int64_t tokens, const torch::Device& device);

}  // namespace rwkv::trainer
