// Distributed plumbing on CPU over Gloo with real processes: launcher environments, the c10d
// communicator, bucketed gradient averaging (also overlapped with backward), a dead rank that must not hang the others,
// and the flat-view copy that checkpoint shards are taken with.
#include <unistd.h>

#include <chrono>
#include <fstream>

#include <torch/csrc/distributed/c10d/Work.hpp>

#include "tests/support/test_util.h"
#include "trainer/dist/communicator.h"
#include "trainer/dist/dist_env.h"
#include "trainer/dist/grad_sync.h"
#include "trainer/dist/parallel_optimizer.h"

using rwkv::DistEnv;
using rwkv::dist_env_from;

TEST_CASE("launcher environments give rank, world size and rendezvous", "[dist]") {
  SECTION("no launcher: rank 0 of 1") {
    DistEnv d = dist_env_from({});
    REQUIRE(d.rank == 0);
    REQUIRE(d.world_size == 1);
    REQUIRE_FALSE(d.distributed());
  }
  SECTION("torchrun with the agent store") {
    DistEnv d = dist_env_from({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "3"},
                               {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29501"},
                               {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "2"}});
    REQUIRE(d.launcher == "torchrun");
    REQUIRE(d.restart_count == 2);
    REQUIRE((d.rank == 3 && d.world_size == 8 && d.local_rank == 3));
    REQUIRE((d.master_addr == "node0" && d.master_port == 29501 && d.agent_store));
  }
  SECTION("slurm") {
    DistEnv d = dist_env_from({{"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"},
                               {"MASTER_ADDR", "10.0.0.1"}});
    REQUIRE(d.launcher == "slurm");
    REQUIRE((d.rank == 9 && d.world_size == 16 && d.local_rank == 1 && d.master_port == 29500));
    REQUIRE_FALSE(d.agent_store);
  }
  SECTION("open mpi") {
    DistEnv d = dist_env_from({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                               {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"MASTER_ADDR", "h"}});
    REQUIRE((d.launcher == "mpi" && d.rank == 1 && d.world_size == 2 && d.local_rank == 1));
  }
  SECTION("bad values name the variable") {
    REQUIRE_THROWS_WITH(dist_env_from({{"RANK", "x"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
                        Catch::Contains("RANK='x'"));
    REQUIRE_THROWS_WITH(dist_env_from({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
                        Catch::Contains("rank 2 of world size 2"));
    REQUIRE_THROWS_WITH(dist_env_from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}}),
                        Catch::Contains("MASTER_ADDR is not set"));
  }
}

// Runs inside each rank of the launches below (hidden tag: never run directly by CTest).
// Every check is a REQUIRE, so a wrong collective fails the rank and the launcher's exit code.
TEST_CASE("dist worker: collectives and gradient averaging", "[.dist-worker]") {
  const DistEnv env = rwkv::dist_env_from_process();
  rwkv::Communicator comm(env, torch::kCPU, std::chrono::seconds(20));
  const int r = comm.rank(), n = comm.world_size();

  auto t = torch::full({5}, static_cast<float>(r + 1));
  comm.all_reduce_sum(t);
  REQUIRE(torch::equal(t, torch::full({5}, n * (n + 1) / 2.0f)));

  auto b = torch::full({3}, static_cast<float>(r == 1 ? 42 : -1));
  comm.broadcast(b, 1 % n);
  REQUIRE(torch::equal(b, torch::full({3}, 42.0f)));

  auto mine = torch::arange(4, torch::kFloat32) + 10 * r;
  auto all = torch::empty({4 * n});
  comm.all_gather(all, mine);
  for (int k = 0; k < n; ++k) REQUIRE(torch::equal(all.narrow(0, 4 * k, 4), torch::arange(4, torch::kFloat32) + 10 * k));

  // Reduce-scatter (ZeRO-2's, started and waited): part r of the sum of every rank's input, each
  // computed here from the ranks' formula.
  auto in = torch::arange(3 * n, torch::kFloat32) * (r + 1), part = torch::empty({3});
  comm.wait(comm.start_reduce_scatter_sum(part, in));
  REQUIRE(torch::equal(part, torch::arange(3 * r, 3 * r + 3, torch::kFloat32) * (n * (n + 1) / 2.0f)));

  // Gradient averaging over buckets of 32 bytes (several buckets), one param without a grad.
  torch::manual_seed(1234 + r);
  std::vector<torch::Tensor> params{torch::zeros({7, 3}, torch::requires_grad()),
                                    torch::zeros({11}, torch::requires_grad()),
                                    torch::zeros({2, 2}, torch::requires_grad())};
  params[0].mutable_grad() = torch::randn({7, 3});
  params[1].mutable_grad() = torch::randn({11});
  rwkv::GradStore store(params, rwkv::GradStore::Mode::autograd);
  rwkv::GradientSync sync(store, comm, 32);
  REQUIRE(sync.bucket_count() >= 2);
  sync.average();
  // The expected average, from every rank's seed, computed independently here.
  torch::Tensor e0 = torch::zeros({7, 3}), e1 = torch::zeros({11});
  for (int k = 0; k < n; ++k) {
    torch::manual_seed(1234 + k);
    e0 += torch::randn({7, 3});
    e1 += torch::randn({11});
  }
  REQUIRE(torch::allclose(params[0].grad(), e0 / n, 1e-6, 1e-6));
  REQUIRE(torch::allclose(params[1].grad(), e1 / n, 1e-6, 1e-6));
  REQUIRE(torch::equal(params[2].grad(), torch::zeros({2, 2})));

  // Overlapped averaging against averaging after backward, on real autograd: a chain
  // x·W0·W1·W2 with a parameter U between them that gets no gradient, two micro-batches of which
  // only the second is armed. Each parameter fills its own bucket (64 bytes), buckets run W2, W1,
  // U, W0: W2's and W1's arrive first and start during backward, U's bucket holds the rest back
  // until backward returns (buckets start in order on every rank).
  const auto chain = [&](bool overlap) {
    torch::manual_seed(77);  // the same weights on every rank
    std::vector<torch::Tensor> w;
    for (int k = 0; k < 4; ++k) w.push_back(torch::randn({6, 6}).requires_grad_());
    std::vector<torch::Tensor> ordered{w[0], w[3], w[1], w[2]};  // w[3] is U
    rwkv::GradStore store(ordered, rwkv::GradStore::Mode::autograd);
    rwkv::GradientSync s(store, comm, 64, overlap);
    REQUIRE(s.bucket_count() == 4);
    for (int micro = 0; micro < 2; ++micro) {
      torch::manual_seed(500 + 10 * r + micro);  // each rank's own data
      const auto x = torch::randn({3, 6});
      if (micro == 1) s.arm_for_backward();
      x.mm(w[0]).tanh().mm(w[1]).tanh().mm(w[2]).pow(2).sum().backward();
    }
    REQUIRE_FALSE(w[3].grad().defined());
    s.average();
    return std::make_pair(ordered, s.started_during_backward());
  };
  const auto [after, none_started] = chain(false);
  const auto [overlapped, started] = chain(true);
  CHECK(none_started == 0);
  CHECK(started == 2);
  for (size_t k = 0; k < after.size(); ++k) {
    INFO("parameter " << k);
    REQUIRE(torch::equal(overlapped[k].grad(), after[k].grad()));  // the same sums: bit-identical
  }
  REQUIRE(torch::equal(overlapped[1].grad(), torch::zeros({6, 6})));
  // And the average itself, from every rank's data recomputed here on one process.
  torch::manual_seed(77);
  std::vector<torch::Tensor> w1;
  for (int k = 0; k < 4; ++k) w1.push_back(torch::randn({6, 6}).requires_grad_());
  for (int k = 0; k < n; ++k)
    for (int micro = 0; micro < 2; ++micro) {
      torch::manual_seed(500 + 10 * k + micro);
      const auto x = torch::randn({3, 6});
      (x.mm(w1[0]).tanh().mm(w1[1]).tanh().mm(w1[2]).pow(2).sum() / n).backward();
    }
  // fp32 sums in another order: within 1e-5 of the largest element (cancelling terms make a
  // per-element relative bound meaningless).
  for (const auto& [got, ref] : {std::make_pair(overlapped[0], w1[0]), std::make_pair(overlapped[3], w1[2])}) {
    const double err = (got.grad() - ref.grad()).abs().max().item<double>() / ref.grad().abs().max().item<double>();
    UNSCOPED_INFO("relative error " << err);
    REQUIRE(err < 1e-5);
  }

  if (const char* out = std::getenv("RWKV_TEST_OUT")) {
    std::ofstream(std::filesystem::path(out) / ("rank" + std::to_string(r))) << "ok " << n << "\n";
  }
}

TEST_CASE("dist worker: a dead rank", "[.dist-dead-rank]") {
  const DistEnv env = rwkv::dist_env_from_process();
  rwkv::Communicator comm(env, torch::kCPU, std::chrono::seconds(3));
  comm.barrier();
  if (comm.rank() == 1) std::_Exit(3);  // dies without a word, like an OOM kill
  auto t = torch::ones({4});
  const auto t0 = std::chrono::steady_clock::now();
  std::string what;
  try {
    comm.all_reduce_sum(t);
  } catch (const std::exception& e) {
    what = e.what();
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ofstream(std::filesystem::path(std::getenv("RWKV_TEST_OUT")) / ("rank" + std::to_string(comm.rank())))
      << (what.empty() ? "no error" : "error") << " " << waited << "\n";
  REQUIRE_FALSE(what.empty());
}

TEST_CASE("torchrun with 2 and 3 CPU ranks: collectives over Gloo", "[dist]") {
  const std::string torchrun = (rwkv::test::source_dir() / ".venv/bin/torchrun").string();
  for (int n : {2, 3}) {
    rwkv::test::TempDir dir("rwkv-dist");
    std::string out;
    const std::string cmd = "RWKV_TEST_OUT=" + dir.path().string() + " OMP_NUM_THREADS=1 " + torchrun +
                            " --standalone --no-python --nproc-per-node " + std::to_string(n) + " " +
                            (rwkv::test::binary_dir() / "bin/rwkv_tests").string() +
                            " '[.dist-worker]'";
    INFO(cmd);
    const int rc = rwkv::test::run(cmd, &out);
    INFO(out);
    REQUIRE(rc == 0);
    for (int r = 0; r < n; ++r) REQUIRE(rwkv::test::slurp(dir / ("rank" + std::to_string(r))) == "ok " + std::to_string(n) + "\n");
  }
}

TEST_CASE("a rank that dies makes the others fail within the timeout, not hang", "[dist]") {
  rwkv::test::TempDir dir("rwkv-dist");
  const int port = rwkv::test::free_port();
  const std::string bin = (rwkv::test::binary_dir() / "bin/rwkv_tests").string();
  // Started directly (not by torchrun, which would tear the group down itself): only our
  // timeout can end the survivors' wait.
  std::string cmd;
  for (int r = 0; r < 3; ++r) {
    cmd += "RWKV_TEST_OUT=" + dir.path().string() + " RANK=" + std::to_string(r) +
           " WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
           " OMP_NUM_THREADS=1 timeout 60 " + bin + " '[.dist-dead-rank]' > " +
           (dir / ("log" + std::to_string(r))).string() + " 2>&1 & ";
  }
  cmd += "wait";
  rwkv::test::run(cmd);
  for (int r : {0, 2}) {
    const std::string s = rwkv::test::slurp(dir / ("rank" + std::to_string(r)));
    INFO("rank " << r << ": " << s << rwkv::test::slurp(dir / ("log" + std::to_string(r))));
    REQUIRE(s.rfind("error ", 0) == 0);
    REQUIRE(std::stod(s.substr(6)) < 30.0);
  }
  REQUIRE_FALSE(std::filesystem::exists(dir / "rank1"));
}

TEST_CASE("copy_flat_ranges copies the runs of the concatenated flat view across tensor boundaries", "[dist]") {
  torch::manual_seed(5);
  const std::vector<torch::Tensor> tensors = {torch::randn({2, 3}), torch::randn({1}), torch::randn({4, 2})};
  std::vector<torch::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.reshape({-1}));
  const torch::Tensor whole = torch::cat(flat);  // 15 elements: 0-5, 6, 7-14
  // Runs inside one tensor, across one boundary, across two, the last element, and one cut of each.
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> cases = {
      {{1, 4}}, {{4, 9}}, {{5, 8}, {10, 15}}, {{0, 15}}, {{14, 15}}, {{0, 1}, {6, 7}, {7, 8}}};
  for (const auto& ranges : cases) {
    int64_t n = 0;
    std::vector<torch::Tensor> want;
    for (const auto& [lo, hi] : ranges) {
      n += hi - lo;
      want.push_back(whole.slice(0, lo, hi));
    }
    torch::Tensor out = torch::full({n}, -1.0f);
    rwkv::trainer::copy_flat_ranges(tensors, ranges, out);
    CHECK(torch::equal(out, torch::cat(want)));
  }
  torch::Tensor out = torch::empty({3});
  CHECK_THROWS_WITH(rwkv::trainer::copy_flat_ranges(tensors, {{13, 16}}, out),
                    Catch::Contains("range [13, 16) is not inside the flat view of 15 elements"));
}
