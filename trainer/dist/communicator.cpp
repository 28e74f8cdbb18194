#include "trainer/dist/communicator.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if RWKV_HAVE_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <fmt/format.h>

#include <cstdlib>
#include <stdexcept>

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

}  // namespace

Communicator::Communicator(const DistEnv& env, const torch::Device& device,
                           std::chrono::milliseconds timeout,
                           std::chrono::milliseconds join_timeout)
    : env_(env), timeout_(timeout) {
  if (!env_.distributed()) return;
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
  if (work) finish(work, "all_reduce", env_, timeout_);
}

void Communicator::broadcast(torch::Tensor& tensor, int root) {
  if (!backend_) return;
  std::vector<torch::Tensor> ts{tensor};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  finish(backend_->broadcast(ts, o), "broadcast", env_, timeout_);
}

void Communicator::all_gather(torch::Tensor& out, const torch::Tensor& in) {
  if (!backend_) {
    out.copy_(in.view_as(out));
    return;
  }
  std::vector<std::vector<torch::Tensor>> outs(1);
  outs[0] = out.chunk(env_.world_size);
  std::vector<torch::Tensor> ins{in};
  finish(backend_->allgather(outs, ins), "all_gather", env_, timeout_);
}

void Communicator::reduce_scatter_sum(torch::Tensor& out, const torch::Tensor& in) {
  if (!backend_) {
    out.copy_(in.view_as(out));
    return;
  }
  c10d::ReduceScatterOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  // The flat-tensor form: Gloo (2.x) and NCCL both implement it as a real reduce-scatter.
  torch::Tensor input = in;
  finish(backend_->_reduce_scatter_base(out, input, o), "reduce_scatter", env_, timeout_);
}

void Communicator::barrier() {
  if (!backend_) return;
  finish(backend_->barrier(), "barrier", env_, timeout_);
}

std::pair<bool, std::string> Communicator::root_outcome(bool ok, const std::string& message,
                                                        std::chrono::milliseconds timeout) {
  if (!store_) return {ok, message};
  const std::string key = "outcome/" + std::to_string(outcomes_++);
  if (is_root()) {
    const std::string value = (ok ? "1" : "0") + message;
    store_->set(key, std::vector<uint8_t>(value.begin(), value.end()));
    return {ok, message};
  }
  try {
    store_->wait({key}, timeout);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("rank {} of {}: no word from rank 0 within {:.0f} s: {}", env_.rank,
                                         env_.world_size, std::chrono::duration<double>(timeout).count(), e.what()));
  }
  const auto value = store_->get(key);
  return {!value.empty() && value[0] == '1', std::string(value.begin() + (value.empty() ? 0 : 1), value.end())};
}

}  // namespace rwkv
