#pragma once
// Collectives between the ranks of a run, through c10d: a TCPStore rendezvous, then
// ProcessGroupNCCL on CUDA or ProcessGroupGloo on CPU. With one rank every collective is the
// identity and no store or socket is created. No home-made transport.
#include <torch/torch.h>

#include <chrono>
#include <memory>

#include "trainer/dist/dist_env.h"

namespace c10d { class Backend; class Store; class Work; }

namespace rwkv {

class Communicator {
 public:
  // Joins the run described by `env`, waiting up to `join_timeout` for every rank to arrive
  // (process start and libtorch loading take seconds). Afterwards a collective that does not
  // complete within `timeout` (a rank died, the network broke) throws instead of hanging.
  Communicator(const DistEnv& env, const torch::Device& device, std::chrono::milliseconds timeout,
               std::chrono::milliseconds join_timeout = std::chrono::minutes(10));
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_root() const { return env_.rank == 0; }
  const DistEnv& env() const { return env_; }

  // In place: sum over ranks (Gloo's AVG reduction is unreliable: callers divide themselves).
  void all_reduce_sum(torch::Tensor& tensor);
  // The same, started in the background (on CUDA: queued on NCCL's stream after the work now on
  // the current stream): returns at once; `tensor` must stay untouched until wait(). Collectives
  // must be started in the same order on every rank. With one rank: a null handle, nothing to do.
  c10::intrusive_ptr<c10d::Work> start_all_reduce_sum(torch::Tensor& tensor);
  // Completes a started collective; throws as a failed all_reduce_sum does. A null handle returns.
  void wait(const c10::intrusive_ptr<c10d::Work>& work);
  // In place: every rank receives `tensor` of rank `root`.
  void broadcast(torch::Tensor& tensor, int root = 0);
  // `out` (world_size·n elements) receives every rank's `in` (n elements), in rank order.
  void all_gather(torch::Tensor& out, const torch::Tensor& in);
  // `out` (n elements) receives part `rank` of the sum over ranks of `in` (world_size·n elements).
  void reduce_scatter_sum(torch::Tensor& out, const torch::Tensor& in);
  void barrier();

  // Rank 0 reports the outcome of work only it does (writing a checkpoint): `ok` and a message
  // (the path written, or the error). Every other rank waits up to `timeout` for that report and
  // returns it; root returns its own. Runs over the store, not a collective, so the wait can be
  // longer than the collective timeout while rank 0 writes. Called in the same order on all ranks.
  std::pair<bool, std::string> root_outcome(bool ok, const std::string& message,
                                            std::chrono::milliseconds timeout);

 private:
  DistEnv env_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  int64_t outcomes_ = 0;  // root_outcome calls so far: names each report's key uniquely
};

}  // namespace rwkv
