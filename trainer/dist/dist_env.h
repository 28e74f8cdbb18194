#pragma once
// Where this process sits in a multi-process run, read from the launcher's environment
// : torchrun, Slurm or Open MPI. A process started by
// none of them is rank 0 of 1.
#include <map>
#include <string>

namespace rwkv {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // torchrun with TORCHELASTIC_USE_AGENT_STORE=True: the agent already hosts the TCPStore and
  // every rank, rank 0 included, connects to it as a client.
  bool agent_store = false;
  // torchrun --max-restarts: which attempt this is (TORCHELASTIC_RESTART_COUNT). The agent's store
  // outlives an attempt, so each attempt's keys need their own prefix.
  int restart_count = 0;
  std::string launcher = "none";  // "torchrun", "slurm", "mpi" or "none"

  bool distributed() const { return world_size > 1; }
};

// Reads the variables from `env` (name → value). Throws std::runtime_error naming the variable
// when a value is malformed or inconsistent (rank ≥ world size, missing MASTER_ADDR under Slurm…).
DistEnv dist_env_from(const std::map<std::string, std::string>& env);

// The same, from this process's environment.
DistEnv dist_env_from_process();

}  // namespace rwkv
