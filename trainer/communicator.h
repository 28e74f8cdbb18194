#pragma once
// Collectives between the ranks of a run, through c10d (DESIGN.md): a TCPStore rendezvous, then
// ProcessGroupNCCL on CUDA or ProcessGroupGloo on CPU. With one rank every collective is the
// identity and no store or socket is created. No home-made transport.
#include <torch/torch.h>

#include <chrono>
#include <memory>

#include "trainer/dist_env.h"

namespace c10d { class Backend; class Store; }

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
  // In place: every rank receives `tensor` of rank `root`.
  void broadcast(torch::Tensor& tensor, int root = 0);
  // `out` (world_size·n elements) receives every rank's `in` (n elements), in rank order.
  void all_gather(torch::Tensor& out, const torch::Tensor& in);
  void barrier();

 private:
  DistEnv env_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
};

}  // namespace rwkv
