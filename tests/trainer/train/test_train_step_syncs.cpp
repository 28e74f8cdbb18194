// Host syncs of a training step (trainer/train/train_step.h): one device-to-host read per step
// (the mean loss and the gradient norm together) in a one-process run, whatever grad_accum; with a
// process group (a one-rank Gloo group here, every collective real) one more per micro-batch, the
// stop agreement, asked one micro-batch ahead so that a stop still lands mid-accumulation.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/train/train_step.h"
#include "trainer/train/trained_model.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"

using namespace rwkv::trainer;
namespace tt = rwkv::test::trainer;

namespace {

constexpr int64_t kMicro = 3;

struct Outcome {
  StepResult result;
  std::vector<std::string> events;  // "ask N" (the stop hook for micro-batch N), "run N" (its batch taken)
};

// One step of 3 micro-batches of the tiny RWKV on the CPU, alone or through a one-rank group;
// the stop hook asks to stop before micro-batch `stop_at` (-1: never).
Outcome one_step(bool group, int64_t stop_at) {
  tt::OneThread one_thread;
  rwkv::test::TempDir dir;
  const RunConfig cfg = parse_run_config(tt::config_yaml(dir.path().string()), "syncs.yaml",
                                         {parse_override("train.grad_accum=3"), parse_override("train.epoch_samples=48")});
  std::optional<rwkv::Communicator> comm;
  if (group) {
    rwkv::DistEnv one;
    one.master_port = rwkv::test::free_port();
    comm.emplace(one, torch::kCPU, std::chrono::seconds(60), std::chrono::seconds(60),
                 rwkv::Communicator::OneRank::group);
  } else {
    comm.emplace(rwkv::DistEnv{}, torch::kCPU, std::chrono::seconds(1));
  }
  TrainedModel m = build_trained_model(cfg, torch::kCPU);
  TrainStep step(cfg, rwkv::named_parameters(*m.model), m.forward, *comm, torch::kCPU);
  Outcome out;
  tt::MarkovSource source(16, 3, cfg.stages.at(0).ctx_len);
  const auto batch = [&](int64_t micro) {
    out.events.push_back("run " + std::to_string(micro));
    return source.samples(micro * 4, 4);
  };
  StepHooks hooks;
  hooks.stop_before = [&](int64_t micro) {
    out.events.push_back("ask " + std::to_string(micro));
    return micro == stop_at;
  };
  out.result = step.train_step(cfg.stages.at(0), 0, kMicro, batch, hooks);
  return out;
}

using Events = std::vector<std::string>;

}  // namespace

TEST_CASE("a one-process training step reads from the device once, whatever grad_accum", "[train]") {
  const Outcome o = one_step(false, -1);
  CHECK(o.result.applied);
  CHECK(o.result.host_reads == 1);
  CHECK(o.events == Events{"ask 0", "run 0", "ask 1", "run 1", "ask 2", "run 2"});
  // A stop before micro-batch 1: nothing read, nothing applied, micro-batch 0's work dropped.
  const Outcome stopped = one_step(false, 1);
  CHECK(stopped.result.stopped);
  CHECK(!stopped.result.applied);
  CHECK(stopped.result.host_reads == 0);
  CHECK(stopped.events == Events{"ask 0", "run 0", "ask 1"});
}

TEST_CASE("with a process group the stop is agreed one micro-batch ahead: one read more per micro-batch",
          "[train]") {
  const Outcome o = one_step(true, -1);
  CHECK(o.result.applied);
  CHECK(o.result.host_reads == 1 + kMicro);
  CHECK(o.events == Events{"ask 0", "ask 1", "run 0", "ask 2", "run 1", "run 2"});
  // Same step, same numbers as alone: the agreement changes when the hook is asked, not the step.
  const Outcome alone = one_step(false, -1);
  CHECK(o.result.loss == alone.result.loss);
  CHECK(o.result.grad_norm == alone.result.grad_norm);
  // A stop asked for micro-batch 2 still stops mid-accumulation, before it runs.
  const Outcome stopped = one_step(true, 2);
  CHECK(stopped.result.stopped);
  CHECK(stopped.result.host_reads == 3);
  CHECK(stopped.events == Events{"ask 0", "ask 1", "run 0", "ask 2", "run 1"});
}
