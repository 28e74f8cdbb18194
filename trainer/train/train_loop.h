#pragma once
// The training run of trainer/README.md "Loss", "Optimizer and schedule", "Context extension" and
// data/README.md "Token files and sample order", told as a short story in train_loop.cpp:
// resume or initialise; prepare the run directory (config.yaml, metrics.jsonl); for each stage,
// steps of grad_accum micro-batches, each one TrainStep (trainer/train/train_step.h: forward →
// cross-entropy + L2Wrap → backward, the non-finite guard, clipping, Adam at the scheduled
// learning rate); a metrics line and metrics.jsonl record per interval
// (trainer/train/metrics_interval.h); held-out validation every validation.every_steps and at the
// end of each stage, and at the end of a run with stages the table validation_by_ctx.tsv
// (trainer/train/validation.h); atomic checkpoints (trainer/train/checkpointer.h) every N
// steps, at the end, on a stop request and before a non-finite abort. A resumed run continues
// from the newest complete checkpoint (bit-exact on CPU).
//
// The model and the data reach the loop through TrainEnv, so the loop's mechanics are testable on
// any module; cmd_train.cpp builds the real RWKV (trainer/train/trained_model.h) and dataset.
//
// Several ranks: every rank runs this loop on its rows of each global batch
// (data/sampler.h), the optimizer step goes through trainer/dist/parallel_optimizer.h so all ranks
// hold the same weights after it, and only rank 0 writes config.yaml, metrics.jsonl and
// checkpoints (the others wait for its word); each rank logs into its own file. Rank 0's initial weights are broadcast; a resumed
// run checks that all ranks found the same checkpoint. Stop requests are agreed before every
// micro-batch, so all ranks stop at the same one. A collective that does not complete within
// train.dist_timeout_s (a rank died) throws on the survivors.
#include <torch/torch.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "trainer/inference/evaluate.h"
#include "trainer/train/batch_source.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/optim/optimizer.h"
#include "trainer/config/run_config.h"
#include "trainer/train/segments.h"

namespace rwkv { class Communicator; }

namespace rwkv::trainer {

struct TrainEnv {
  // Its parameters are the fp32 master weights, on the run's device, initialised by the caller
  // (the loop overwrites them on resume or init_from).
  std::shared_ptr<torch::nn::Module> model;
  // tokens (B, T) int64 → logits (B, T, V); from an RNN state too for train.segment_len.
  StepForward forward;
  // The data of one stage.
  std::function<std::unique_ptr<BatchSource>(const Stage&)> data;
  // Forward FLOPs per token (2(13LD² + VD), rwkv/README.md "Shapes"); a training token costs 3×. For MFU.
  double forward_flops_per_token = 0;
  // Weights for checkpoint.init_from (name → tensor), checked against the model: a checkpoint, a
  // checkpoints or run directory, .pth, .safetensors or HF folder (cmd_train: read_init_weights).
  // Unset: only a checkpoint directory is accepted.
  std::function<NamedTensors(const std::string& path)> read_weights;
  // The ranks of a multi-process run, joined on the run's device (or a one-rank process group,
  // Communicator::OneRank::group); null: this process alone.
  Communicator* comm = nullptr;
  // Held-out figures of the model at a ctx_len, called on every rank at once with the loop's
  // communicator (cmd_train: trainer/train/validation.h Validation::run). Needed when the config
  // has a validation section.
  std::function<EvalResult(int64_t ctx_len, Communicator& comm)> validate;
};

struct TrainControls {
  // Set asynchronously (SIGINT/SIGTERM): the loop checkpoints the last complete step and returns.
  const std::atomic<bool>* stop = nullptr;
  // Tests: asked before each micro-batch (micro = 0 … grad_accum−1 of the step after `p`);
  // true acts like a stop request there.
  std::function<bool(const TrainProgress& p, int64_t micro)> stop_before;
  // Tests: called after the step's backward, before the guard (to inject non-finite gradients).
  // With several ranks and train.overlap_grad_reduce the gradients are packed for the
  // all-reduce during backward, so changes made here only reach a one-process run.
  std::function<void(const TrainProgress& p, const NamedTensors& params)> after_backward;
  // Where the run's lines and warnings go. Default: the process log (common/log/log.h) on every
  // rank; a sink given here hears rank 0's alone.
  std::function<void(const std::string&)> print, warn;
  // cmd_train: once the run directory is claimed, the process log also goes into this rank's log
  // file (trainer/train/run_directory.h run_log_path), rotated at log.file_max_mb, for the rest of
  // the process.
  bool log_file = false;
};

enum class TrainExit { finished, max_steps, stopped };

struct TrainReport {
  TrainExit exit = TrainExit::finished;
  TrainProgress progress;
  std::vector<double> losses;          // mean loss of each step this process ran (skipped: NaN)
  std::filesystem::path checkpoint;    // the last one written
  bool resumed = false;
};

// The device train.device asks for on rank `local_rank` (trainer/config/device.h). Throws
// ConfigError naming the field for a CUDA device torch does not see and for device-dependent
// constraints (bf16 without CUDA, D % 32 on CUDA).
torch::Device run_device(const RunConfig& config, int local_rank = 0);

// Micro-batches each of `world_size` ranks runs per step of `stage`: grad_accum / world_size.
// Throws ConfigError when world_size does not divide grad_accum (stage `index` of config).
int64_t micro_batches_per_rank(const RunConfig& config, size_t index, int world_size);

// Runs (or resumes) the run. Throws std::runtime_error when nan_skip_limit non-finite steps come
// in a row (after checkpointing the last good state), ConfigError on an unsafe config change.
TrainReport run_training(const RunConfig& config, TrainEnv& env, const TrainControls& controls = {});

}  // namespace rwkv::trainer
