#include "trainer/dist/dist_env.h"

#include <cstdlib>
#include <stdexcept>

extern char** environ;

namespace rwkv {
namespace {

using Env = std::map<std::string, std::string>;

const std::string* find(const Env& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? nullptr : &it->second;
}

int to_int(const Env& env, const std::string& name, int min_value) {
  const std::string* v = find(env, name);
  if (!v) throw std::runtime_error("environment variable " + name + " is not set");
  size_t used = 0;
  int x = 0;
  try {
    x = std::stoi(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v->size() || x < min_value) {
    throw std::runtime_error("environment variable " + name + "='" + *v +
                             "' is not an integer >= " + std::to_string(min_value));
  }
  return x;
}

// Slurm and MPI give ranks but no rendezvous: the job script exports MASTER_ADDR/PORT.
void read_master(const Env& env, DistEnv& d, bool required) {
  const std::string* addr = find(env, "MASTER_ADDR");
  if (addr) d.master_addr = *addr;
  else if (required) {
    throw std::runtime_error("launched by " + d.launcher + " with " + std::to_string(d.world_size) +
                             " ranks but MASTER_ADDR is not set (export the first node's address)");
  }
  if (find(env, "MASTER_PORT")) d.master_port = to_int(env, "MASTER_PORT", 1);
  if (d.master_port > 65535) throw std::runtime_error("MASTER_PORT must be below 65536");
}

}  // namespace

DistEnv dist_env_from(const Env& env) {
  DistEnv d;
  if (find(env, "RANK") && find(env, "WORLD_SIZE")) {  // torchrun (and any launcher copying it)
    d.launcher = "torchrun";
    d.rank = to_int(env, "RANK", 0);
    d.world_size = to_int(env, "WORLD_SIZE", 1);
    d.local_rank = find(env, "LOCAL_RANK") ? to_int(env, "LOCAL_RANK", 0) : d.rank;
    const std::string* agent = find(env, "TORCHELASTIC_USE_AGENT_STORE");
    d.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
    if (find(env, "TORCHELASTIC_RESTART_COUNT")) d.restart_count = to_int(env, "TORCHELASTIC_RESTART_COUNT", 0);
    read_master(env, d, d.world_size > 1);
  } else if (find(env, "SLURM_PROCID") && find(env, "SLURM_NTASKS")) {
    d.launcher = "slurm";
    d.rank = to_int(env, "SLURM_PROCID", 0);
    d.world_size = to_int(env, "SLURM_NTASKS", 1);
    d.local_rank = find(env, "SLURM_LOCALID") ? to_int(env, "SLURM_LOCALID", 0) : 0;
    read_master(env, d, d.world_size > 1);
  } else if (find(env, "OMPI_COMM_WORLD_RANK") && find(env, "OMPI_COMM_WORLD_SIZE")) {
    d.launcher = "mpi";
    d.rank = to_int(env, "OMPI_COMM_WORLD_RANK", 0);
    d.world_size = to_int(env, "OMPI_COMM_WORLD_SIZE", 1);
    d.local_rank =
        find(env, "OMPI_COMM_WORLD_LOCAL_RANK") ? to_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0) : 0;
    read_master(env, d, d.world_size > 1);
  }
  if (d.rank >= d.world_size) {
    throw std::runtime_error(d.launcher + " environment gives rank " + std::to_string(d.rank) +
                             " of world size " + std::to_string(d.world_size));
  }
  return d;
}

DistEnv dist_env_from_process() {
  Env env;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return dist_env_from(env);
}

}  // namespace rwkv
