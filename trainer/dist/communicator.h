#pragma once
// Collectives between the ranks of a run, through c10d: a TCPStore rendezvous, then
// ProcessGroupNCCL on CUDA or ProcessGroupGloo on CPU. With one rank every collective is the
// identity and no store or socket is created, unless a one-rank group is asked for (the tests run
// the whole NCCL path of the train loop on one GPU that way). No home-made transport.
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "trainer/dist/dist_env.h"

namespace c10d { class Backend; class Store; class Work; }

namespace rwkv {

class Communicator {
 public:
  // What a run of one rank gets: no process group (the default; every collective is the
  // identity), or a real one-rank group over a TCPStore on env.master_port, so that every
  // collective goes through NCCL or Gloo as it would with more ranks.
  enum class OneRank { no_group, group };

  // Joins the run described by `env`, waiting up to `join_timeout` for every rank to arrive
  // (process start and libtorch loading take seconds). Afterwards a collective that does not
  // complete within `timeout` (a rank died, the network broke) throws instead of hanging.
  Communicator(const DistEnv& env, const torch::Device& device, std::chrono::milliseconds timeout,
               std::chrono::milliseconds join_timeout = std::chrono::minutes(10),
               OneRank one_rank = OneRank::no_group);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_root() const { return env_.rank == 0; }
  const DistEnv& env() const { return env_; }
  // Whether the collectives go through a process group (several ranks, or OneRank::group). Without
  // one each collective is the identity, and callers skip the work they would do around it.
  bool grouped() const { return backend_ != nullptr; }

  // In place: sum over ranks (Gloo's AVG reduction is unreliable: callers divide themselves).
  void all_reduce_sum(torch::Tensor& tensor);
  // The same, started in the background (on CUDA: queued on NCCL's stream after the work now on
  // the current stream): returns at once; `tensor` must stay untouched until wait(). Collectives
  // must be started in the same order on every rank. With one rank: a null handle, nothing to do.
  c10::intrusive_ptr<c10d::Work> start_all_reduce_sum(torch::Tensor& tensor);
  // Completes a started collective; throws as a failed all_reduce_sum does. A null handle returns.
  // Its buffers are free afterwards where the caller's handle was the only one.
  void wait(const c10::intrusive_ptr<c10d::Work>& work);
  // In place: every rank receives `tensor` of rank `root`.
  void broadcast(torch::Tensor& tensor, int root = 0);
  // `out` (world_size·n elements) receives every rank's `in` (n elements), in rank order.
  void all_gather(torch::Tensor& out, const torch::Tensor& in);
  // In place: `all` (world_size equal parts, part `rank` this rank's) receives every rank's part,
  // started in the background as start_all_reduce_sum. No buffer besides `all` on either backend.
  // With one rank: a null handle, nothing to do.
  c10::intrusive_ptr<c10d::Work> start_all_gather_in_place(torch::Tensor& all);
  // `out` (n elements) receives part `rank` of the sum over ranks of `in` (world_size·n elements),
  // started in the background as start_all_reduce_sum: both tensors untouched until wait(), and
  // `in` is scratch afterwards (Gloo sums in it in place). With one rank: `in` copied to `out`, a
  // null handle.
  c10::intrusive_ptr<c10d::Work> start_reduce_scatter_sum(torch::Tensor& out, torch::Tensor& in);
  void barrier();

  // Work only rank 0 does (writing a checkpoint, locking the run directory), with its outcome
  // given to every rank: rank 0 runs `work` and returns its result or rethrows its exception; every
  // other rank returns the same string or throws "rank 0 could not <what>: <its error>". Not a
  // collective, so it may take longer than one: the others wait up to `limit` (the config field
  // `limit_field` says so in the error). Rank 0 beats a heartbeat through the store meanwhile, so a
  // rank 0 that died or froze is noticed within the collective timeout (train.dist_timeout_s),
  // whoever hosts the store (rank 0 itself, or torchrun's agent, which outlives it). Called in the
  // same order on all ranks. With one rank: `work()`.
  std::string on_root(const std::string& what, const std::function<std::string()>& work,
                      std::chrono::milliseconds limit, const char* limit_field);

  // Word from the other ranks to rank 0 outside the collectives' order (the ranks' reports of a
  // checkpoint shard written on a background thread): post() leaves this rank's `value` under
  // `key` in the store; on rank 0, collect_posts() returns every other rank's value under `key`
  // (index = rank; its own entry empty), polling until all are there. It throws naming the ranks
  // missing after `limit` (the config field `limit_field` says so), or when `cancelled` turns
  // true. Safe from another thread than the collectives'. With one rank: nothing to post or collect.
  void post(const std::string& key, const std::string& value);
  std::vector<std::string> collect_posts(const std::string& key, std::chrono::milliseconds limit,
                                         const char* limit_field, const std::function<bool()>& cancelled);

 private:
  DistEnv env_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  bool is_gloo_ = false;  // CPU collectives: Gloo lacks some of NCCL's (reduce-scatter)
  // Rank 0's side of on_root: runs `work` while a thread beats `beat`, then posts `key`.
  std::string run_on_root(const std::string& key, const std::string& beat, const std::function<std::string()>& work);
  // The other ranks' side: waits for `key` while `beat` moves.
  std::string wait_for_root(const std::string& key, const std::string& beat, const std::string& what,
                            std::chrono::milliseconds limit, const char* limit_field);

  int64_t outcomes_ = 0;  // on_root calls so far: names each call's keys uniquely
};

}  // namespace rwkv
