#include "trainer/train/train_step.h"

#include <climits>
#include <cmath>
#include <stdexcept>
#include <utility>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "trainer/optim/lr_schedule.h"
#include "trainer/train/cross_entropy_l2wrap.h"

namespace rwkv::trainer {

double sum_over_ranks(Communicator& comm, double value, const torch::Device& device) {
  if (!comm.grouped()) return value;
  auto t = torch::full({1}, value, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  comm.all_reduce_sum(t);
  return t.item<double>();
}

torch::ScalarType compute_dtype(const RunConfig& config, const torch::Device& device) {
  const bool bf16 = config.train.precision == Precision::bf16 ||
                    (config.train.precision == Precision::auto_ && device.is_cuda());
  return bf16 ? torch::kBFloat16 : torch::kFloat32;
}

namespace {

// Every rank starts from rank 0's parameters (before the masters are taken from them).
NamedTensors from_rank0(NamedTensors params, Communicator& comm) {
  if (!comm.grouped()) return params;
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    auto values = p.detach();  // shares p's storage
    comm.broadcast(values);
  }
  return params;
}

// A CPU step frees and allocates the same tensors every micro-batch: the activations, the
// (B·T, V) logits and their gradient, the embedding's dense gradient (1.3 GB at 169M, 4 × 256).
// glibc serves a block above its mmap threshold (32 MiB at most) with a fresh mapping each time and
// gives the heap's free top back to the OS, so each micro-batch page-faulted those bytes in again,
// zero-filled by the kernel: `rwkv bench train configs/rwkv4-169m.yaml --micro-batch 4 --ctx 256`
// with 2 micro-batches took 2.03 M page faults and 4.1 s of system time, 1.14 M and 2.0 s with
// freed memory kept (the rest is first touches). Kept in the heap, it is reused as LibTorch's CUDA
// caching allocator reuses device memory. Process-wide, set once; the tensors' own accounting
// (trainer/bench/cpu_memory_meter.h) does not change.
void keep_freed_host_memory() {
#ifdef __GLIBC__
  static const bool kept = [] { return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1; }();
  (void)kept;
#endif
}

}  // namespace

TrainStep::TrainStep(const RunConfig& config, NamedTensors params, StepForward forward, Communicator& comm,
                     const torch::Device& device)
    : params_(from_rank0(std::move(params), comm)),
      forward_(std::move(forward)),
      segment_grad_(config.train.segment_grad),
      comm_(comm),
      device_(device),
      dtype_(compute_dtype(config, device)),
      vocab_(config.model.vocab_size),
      l2wrap_(config.optimizer.l2wrap),
      grad_clip_(config.optimizer.grad_clip),
      optimizer_(make_parallel_optimizer(
          params_, config.optimizer, comm,
          ParallelOptions{.zero_stage = config.train.zero_stage,
                          .bucket_bytes = static_cast<int64_t>(config.train.grad_bucket_mb * (1 << 20)),
                          .overlap_grad_reduce = config.train.overlap_grad_reduce,
                          .compute_dtype = dtype_})) {
  if (device.is_cpu()) keep_freed_host_memory();
}

StepResult TrainStep::train_step(const Stage& stage, int64_t stage_step, int64_t micro_batches, const Batch& batch,
                                 const StepHooks& hooks) {
  StepResult result;
  result.lr = learning_rate(stage, stage_step);
  optimizer_->drop_gradients();
  host_reads_ = 0;
  const auto asks = [&](int64_t micro) { return hooks.stop_before && hooks.stop_before(micro); };
  // With a process group the ranks agree where to stop (a signal reaches them at slightly different
  // times: they stop where any one asks), one micro-batch ahead (train_step.h).
  torch::Tensor flag;
  c10::intrusive_ptr<c10d::Work> agreement;
  const auto start_agreement = [&](int64_t micro) {
    flag = torch::full({1}, asks(micro) ? 1.0 : 0.0, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
    agreement = comm_.start_all_reduce_sum(flag);
  };
  if (comm_.grouped()) start_agreement(0);
  auto loss_sum = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  for (int64_t micro = 0; micro < micro_batches; ++micro) {
    bool stop = false;
    if (comm_.grouped()) {
      comm_.wait(agreement);
      stop = read_to_host(flag).item<double>() > 0;
      if (!stop && micro + 1 < micro_batches) start_agreement(micro + 1);
    } else {
      stop = asks(micro);
    }
    if (stop) {
      // The partial accumulation is dropped: the caller's last complete step stands, and the step
      // is redone from its first micro-batch on the same samples.
      optimizer_->drop_gradients();
      result.stopped = true;
      result.host_reads = host_reads_;
      return result;
    }
    loss_sum += forward_backward(batch(micro), stage, micro_batches, micro == micro_batches - 1, hooks);
  }
  if (hooks.after_backward) hooks.after_backward(params_);
  // Identical on every rank from here (averaged loss and gradients), so all take the same branch.
  optimizer_->reduce_gradients();
  if (comm_.grouped()) comm_.all_reduce_sum(loss_sum);
  update(stage, (loss_sum / static_cast<double>(micro_batches * comm_.world_size())).reshape({}), result);
  if (hooks.phase) hooks.phase(StepPhase::update);
  result.host_reads = host_reads_;
  return result;
}

torch::Tensor TrainStep::forward_backward(const torch::Tensor& tokens, const Stage& stage, int64_t micro_batches,
                                          bool last, const StepHooks& hooks) {
  const int64_t ctx_len = stage.ctx_len;
  if (tokens.dim() != 2 || tokens.size(1) != ctx_len + 1)
    throw std::invalid_argument(fmt::format("train step: a micro-batch must be (rows, ctx_len + 1 = {}) tokens, got {}",
                                            ctx_len + 1, fmt::join(tokens.sizes(), "x")));
  // Host tokens go to a GPU from pinned memory without blocking: a pageable copy would wait for
  // the device to finish the work queued so far (one host sync per micro-batch).
  const auto batch = tokens.is_cpu() && device_.is_cuda()
                         ? tokens.contiguous().pin_memory().to(device_, torch::kLong, /*non_blocking=*/true)
                         : tokens.to(device_, torch::kLong);
  const auto inputs = batch.narrow(1, 0, ctx_len), targets = batch.narrow(1, 1, ctx_len);
  // Each micro-batch's loss is divided by the rank's micro-batch count, and the gradient averaged
  // over ranks, so the result is that of one batch of micro_batch·grad_accum samples; L2Wrap
  // follows the same scale (trainer/train/cross_entropy_l2wrap.h). A segment's loss is its mean
  // weighted by its share of the sample: the sum over segments is the sample's mean, and L2Wrap's
  // per-position push factor/(B·t)·share equals the whole sample's factor/(B·T).
  const auto loss_of = [&](const torch::Tensor& logits, const torch::Tensor& seg_targets, double share) {
    const auto ce = cross_entropy_l2wrap(logits, seg_targets, l2wrap_);
    return SegmentLoss{ce * (share / static_cast<double>(micro_batches)), ce.detach().to(torch::kFloat64) * share};
  };
  const auto phase = [&](StepPhase p) {
    if (hooks.phase) hooks.phase(p);
  };
  torch::Tensor value;
  if (stage.segment() < ctx_len) {
    SegmentCallbacks callbacks{[&] { phase(StepPhase::forward); },
                               [&] {
                                 if (last) optimizer_->before_last_backward();
                               },
                               [&] { optimizer_->after_backward(); }};
    value = segmented_forward_backward(forward_, inputs, targets, stage.segment(), segment_grad_, loss_of, callbacks);
  } else {
    const SegmentLoss loss = loss_of(forward_.fresh(inputs), targets, 1.0);
    phase(StepPhase::forward);
    if (last) optimizer_->before_last_backward();
    loss.backprop.backward();
    optimizer_->after_backward();
    value = loss.value;
  }
  phase(StepPhase::backward);
  return value;
}

void TrainStep::update(const Stage& stage, const torch::Tensor& mean_loss, StepResult& result) {
  // The step's one read: what the guard and clipping need, together.
  const auto host = read_to_host(torch::stack({mean_loss, optimizer_->grad_norm()}));
  const double* values = host.const_data_ptr<double>();
  result.loss = values[0];
  result.grad_norm = values[1];
  result.applied = std::isfinite(result.loss) && std::isfinite(result.grad_norm);
  if (result.applied) {
    optimizer_->clip(result.grad_norm, grad_clip_);
    optimizer_->step(result.lr, stage.lr_mult);
  }
  optimizer_->drop_gradients();
}

torch::Tensor TrainStep::read_to_host(const torch::Tensor& t) {
  ++host_reads_;
  return t.to(torch::kCPU).contiguous();
}

}  // namespace rwkv::trainer
