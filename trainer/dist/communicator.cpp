#include "trainer/dist/communicator.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if RWKV_HAVE_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

namespace rwkv {
namespace {

std::shared_ptr<::gloo::transport::Device> gloo_device() {
  // The same knob the Python front end honours: which interface to bind on multi-homed nodes.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// A collective's failure (a peer's closed connection, the timeout) says which rank saw it and
// what to suspect, so the log of a multi-node run points at the cause.
void finish(const c10::intrusive_ptr<c10d::Work>& work, const char* what, const DistEnv& env,
            std::chrono::milliseconds timeout) {
  std::string error;
  try {
    if (!work->wait(timeout)) error = "timed out";
  } catch (const c10::Error& e) {
    error = e.what_without_backtrace();  // the C++ frames say nothing to the user
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty())
    throw std::runtime_error(fmt::format(
        "rank {} of {}: {} failed or did not complete within {:.0f} s (a rank died, hung or left the run; "
        "the limit is train.dist_timeout_s): {}",
        env.rank, env.world_size, what, std::chrono::duration<double>(timeout).count(), error));
}

// Gloo's worker thread lets go of a work (and of the tensors it holds) only just after waking its
// waiter. Waiting for that, for a handle its caller holds alone, makes a collective's buffers free
// when wait() returns, so the next bucket does not meet them (the memory `rwkv plan` counts;
// trainer/bench/bench_memory.cpp measures it). Bounded, in case someone else keeps the handle.
void let_go(const c10::intrusive_ptr<c10d::Work>& work) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (work.use_count() > 1 && std::chrono::steady_clock::now() < limit) std::this_thread::yield();
}

// A reduce-scatter finished from an all-reduce of its input: wait() waits for the all-reduce, then
// copies part `rank` of the sum into `out`.
class PartOfAllReduce : public c10d::Work {
 public:
  PartOfAllReduce(c10::intrusive_ptr<c10d::Work> all_reduce, torch::Tensor in, torch::Tensor out, int rank, int world)
      : all_reduce_(std::move(all_reduce)), in_(std::move(in)), out_(std::move(out)), rank_(rank), world_(world) {}
  bool wait(std::chrono::milliseconds timeout) override {
    if (!all_reduce_->wait(timeout)) return false;
    let_go(all_reduce_);
    const int64_t part = in_.numel() / world_;
    out_.copy_(in_.view({-1}).narrow(0, rank_ * part, part).view_as(out_));
    return true;
  }

 private:
  c10::intrusive_ptr<c10d::Work> all_reduce_;
  torch::Tensor in_, out_;
  int rank_, world_;
};

}  // namespace

Communicator::Communicator(const DistEnv& env, const torch::Device& device,
                           std::chrono::milliseconds timeout,
                           std::chrono::milliseconds join_timeout, OneRank one_rank)
    : env_(env), timeout_(timeout) {
  if (!env_.distributed() && one_rank == OneRank::no_group) return;
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(env_.master_port);
  // Under torchrun's agent store the agent is the server; otherwise rank 0 hosts it.
  opts.isServer = !env_.agent_store && env_.rank == 0;
  opts.numWorkers = env_.agent_store ? std::nullopt : std::optional<size_t>(env_.world_size);
  opts.waitWorkers = !env_.agent_store;  // every rank checks in; the server waits for all
  opts.timeout = join_timeout;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, opts);
  // torchrun's store is shared with the agent and holds the keys of earlier attempts (restarts).
  store_ = c10::make_intrusive<c10d::PrefixStore>("rwkv/attempt_" + std::to_string(env_.restart_count), tcp);
  store_->setTimeout(timeout_);
  if (device.is_cuda()) {
#if RWKV_HAVE_CUDA
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = timeout_;  // NCCL connects lazily, at the first collective
    backend_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, env_.rank, env_.world_size, o);
#else
    throw std::runtime_error("this binary was built without CUDA: cannot use NCCL");
#endif
  } else {
    // Gloo connects the full mesh in its constructor: allow the join timeout for that.
    auto o = c10d::ProcessGroupGloo::Options::create(join_timeout);
    o->devices.push_back(gloo_device());
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env_.rank, env_.world_size, o);
    gloo->setTimeout(timeout_);
    backend_ = gloo;
    is_gloo_ = true;
  }
}

Communicator::~Communicator() = default;

void Communicator::all_reduce_sum(torch::Tensor& tensor) {
  if (!backend_) return;
  std::vector<torch::Tensor> ts{tensor};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  finish(backend_->allreduce(ts, o), "all_reduce", env_, timeout_);
}

c10::intrusive_ptr<c10d::Work> Communicator::start_all_reduce_sum(torch::Tensor& tensor) {
  if (!backend_) return {};
  std::vector<torch::Tensor> ts{tensor};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  return backend_->allreduce(ts, o);
}

void Communicator::wait(const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work) return;
  finish(work, "collective", env_, timeout_);
  if (is_gloo_) let_go(work);
}

void Communicator::broadcast(torch::Tensor& tensor, int root) {
  if (!backend_) return;
  std::vector<torch::Tensor> ts{tensor};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  finish(backend_->broadcast(ts, o), "broadcast", env_, timeout_);
}

void Communicator::all_gather(torch::Tensor& out, const torch::Tensor& in) {
  const int64_t n = in.numel();
  out.view({-1}).narrow(0, rank() * n, n).copy_(in.reshape({-1}));
  if (const auto work = start_all_gather_in_place(out)) finish(work, "all_gather", env_, timeout_);
}

c10::intrusive_ptr<c10d::Work> Communicator::start_all_gather_in_place(torch::Tensor& all) {
  if (!backend_) return {};
  auto flat = all.view({-1});
  const int64_t n = flat.numel() / world_size(), mine = rank() * n;
  if (!is_gloo_) {
    // NCCL gathers in place when the input is the output's own part (as FSDP2 does).
    auto own = flat.narrow(0, mine, n);
    return backend_->_allgather_base(flat, own);
  }
  // Gloo's all-gather gathers into a temporary of the whole output and copies it over: a second
  // bucket per collective. The other parts zeroed and summed in place give the same values with
  // none (x + 0 = x exactly; only a -0.0 would come back as +0.0).
  flat.narrow(0, 0, mine).zero_();
  flat.narrow(0, mine + n, flat.numel() - mine - n).zero_();
  return start_all_reduce_sum(flat);
}

c10::intrusive_ptr<c10d::Work> Communicator::start_reduce_scatter_sum(torch::Tensor& out, torch::Tensor& in) {
  if (!backend_) {
    out.copy_(in.view_as(out));
    return {};
  }
  if (!is_gloo_) {
    c10d::ReduceScatterOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return backend_->_reduce_scatter_base(out, in, o);  // NCCL: a real reduce-scatter into `out`
  }
  // Gloo has no reduce-scatter: its _reduce_scatter_base all-reduces a clone of `in` and copies
  // the own part out, one more bucket alive per collective in flight. The same all-reduce in place
  // on `in`, which the caller gives up until wait(), costs no clone.
  return c10::make_intrusive<PartOfAllReduce>(start_all_reduce_sum(in), in, out, env_.rank, env_.world_size);
}

void Communicator::barrier() {
  if (!backend_) return;
  finish(backend_->barrier(), "barrier", env_, timeout_);
}

namespace {

using Clock = std::chrono::steady_clock;

// A store operation's failure as one line (c10's frames say nothing to the user).
std::string store_error(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

// Adds 1 to `key` every `interval` from its own thread until destroyed: proof of life for the
// ranks waiting on rank 0. A failed beat ends the thread (the waiters then see the beats stop).
class Heartbeat {
 public:
  Heartbeat(c10d::Store& store, std::string key, std::chrono::milliseconds interval)
      : thread_([this, &store, key = std::move(key), interval] {
          std::unique_lock<std::mutex> lock(mutex_);
          do {
            try {
              store.add(key, 1);
            } catch (const std::exception&) {
              return;
            }
          } while (!stop_.wait_for(lock, interval, [this] { return stopped_; }));
        }) {}
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopped_ = true;
    }
    stop_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable stop_;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace

std::string Communicator::on_root(const std::string& what, const std::function<std::string()>& work,
                                  std::chrono::milliseconds limit, const char* limit_field) {
  if (!store_) return work();
  const std::string n = std::to_string(outcomes_++);
  const std::string key = "outcome/" + n, beat = "alive/" + n;
  return is_root() ? run_on_root(key, beat, work) : wait_for_root(key, beat, what, limit, limit_field);
}

std::string Communicator::run_on_root(const std::string& key, const std::string& beat,
                                      const std::function<std::string()>& work) {
  std::string message;
  std::exception_ptr failure;
  {
    // Several beats per collective timeout, so one late beat is not taken for a dead rank.
    const Heartbeat alive(*store_, beat, std::clamp(timeout_ / 5, std::chrono::milliseconds(10), std::chrono::milliseconds(1000)));
    try {
      message = work();
    } catch (const std::exception& e) {
      failure = std::current_exception();
      message = e.what();
    }
  }
  const std::string value = (failure ? "0" : "1") + message;
  store_->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  // The others read the outcome from the store, which rank 0 may host and take along when it exits
  // (the run's last checkpoint): wait until each has read it. Bounded: a rank that died meanwhile is
  // the next collective's to report.
  const auto deadline = Clock::now() + timeout_;
  while (store_->add(key + "/read", 0) < env_.world_size - 1 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (failure) std::rethrow_exception(failure);
  return message;
}

// `ask` (a store request) run on its own thread and given up after `limit`: a store that rank 0
// hosts stops answering when rank 0 freezes, and then every c10d store call blocks for good, even
// wait() with a timeout (it blocks again cancelling the wait). The abandoned thread holds its own
// reference to the store and ends with the process. Returns false when `limit` passed first.
template <class T>
bool ask_within(std::chrono::milliseconds limit, std::function<T()> ask, T& answer) {
  auto task = std::make_shared<std::packaged_task<T()>>(std::move(ask));
  std::future<T> reply = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (reply.wait_for(limit) != std::future_status::ready) return false;
  answer = reply.get();  // rethrows the store's error
  return true;
}

std::string Communicator::wait_for_root(const std::string& key, const std::string& beat, const std::string& what,
                                        std::chrono::milliseconds limit, const char* limit_field) {
  const auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
  const auto poll = std::clamp(timeout_ / 20, std::chrono::milliseconds(1), std::chrono::milliseconds(50));
  const auto silent = [&] {
    return std::runtime_error(fmt::format(
        "rank {} of {}: rank 0 stopped responding while it was to {}: no heartbeat for {:.0f} s (it died or "
        "hung; the limit is train.dist_timeout_s)",
        env_.rank, env_.world_size, what, seconds(timeout_)));
  };
  // One round trip: is the outcome posted, how many beats so far; then the outcome itself.
  const auto ask = [&](auto request, auto& answer) {
    try {
      if (!ask_within(timeout_, std::function(request), answer)) throw silent();
    } catch (const std::runtime_error&) {
      throw;
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("rank {} of {}: lost contact with rank 0 while it was to {}: {}", env_.rank,
                                           env_.world_size, what, store_error(e)));
    }
  };
  // One round trip: the outcome when posted (then acknowledged, so rank 0 may exit), else the
  // number of beats so far.
  struct State {
    std::optional<std::vector<uint8_t>> outcome;
    int64_t beats = 0;
  };
  const c10::intrusive_ptr<c10d::Store> store = store_;
  const std::string ack = key + "/read";
  const auto look = [store, key, beat, ack] {
    State s;
    if (store->check({key})) {
      s.outcome = store->get(key);
      store->add(ack, 1);
    } else {
      s.beats = store->add(beat, 0);
    }
    return s;
  };
  const auto start = Clock::now();
  auto last_beat = start;
  int64_t beats = -1;
  State state;
  // Polls 1 ms apart at first, doubling up to `poll`: an outcome about to be posted (a checkpoint
  // written in the background while the ranks trained on) costs a few ms, not a whole `poll`.
  auto pause = std::chrono::milliseconds(1);
  for (ask(look, state); !state.outcome; ask(look, state)) {
    const auto now = Clock::now();
    if (state.beats != beats) {
      beats = state.beats;
      last_beat = now;
    } else if (now - last_beat > timeout_) {
      throw silent();
    }
    if (now - start > limit)
      throw std::runtime_error(fmt::format("rank {} of {}: rank 0 did not {} within {:.0f} s (the limit is {})",
                                           env_.rank, env_.world_size, what, seconds(limit), limit_field));
    std::this_thread::sleep_for(pause);
    pause = std::min(2 * pause, poll);
  }
  const std::vector<uint8_t>& value = *state.outcome;
  const std::string word(value.begin() + (value.empty() ? 0 : 1), value.end());
  if (value.empty() || value[0] != '1') throw std::runtime_error(fmt::format("rank 0 could not {}: {}", what, word));
  return word;
}

void Communicator::post(const std::string& key, const std::string& value) {
  if (store_) store_->set(key + "/" + std::to_string(env_.rank), std::vector<uint8_t>(value.begin(), value.end()));
}

std::vector<std::string> Communicator::collect_posts(const std::string& key, std::chrono::milliseconds limit,
                                                     const char* limit_field, const std::function<bool()>& cancelled) {
  std::vector<std::string> out(static_cast<size_t>(env_.world_size));
  if (!store_) return out;
  std::vector<bool> have(out.size(), false);
  have[0] = true;
  const auto start = Clock::now();
  for (;;) {
    std::string missing;
    for (int r = 1; r < env_.world_size; ++r) {
      if (have[static_cast<size_t>(r)]) continue;
      const std::string k = key + "/" + std::to_string(r);
      if (store_->check({k})) {
        const auto v = store_->get(k);
        out[static_cast<size_t>(r)].assign(v.begin(), v.end());
        have[static_cast<size_t>(r)] = true;
      } else {
        missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      }
    }
    if (missing.empty()) return out;
    if (cancelled()) throw std::runtime_error("rank 0: cancelled while waiting for rank(s) " + missing);
    if (Clock::now() - start > limit)
      throw std::runtime_error(fmt::format("rank 0 of {}: no word from rank(s) {} within {:.0f} s (the limit is {})",
                                           env_.world_size, missing,
                                           std::chrono::duration<double>(limit).count(), limit_field));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace rwkv
