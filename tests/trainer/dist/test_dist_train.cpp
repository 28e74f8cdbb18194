// `rwkv train` on several CPU processes over Gloo, against the same run on one process:
// torchrun with 2 and 3 ranks, ZeRO-1 and ZeRO-2, checkpoints that resume on another number of
// ranks, a stop signal seen by one rank only, and a rank killed mid-run.
//
// Tolerance: the ranks sum the same per-sample gradients in another order (each rank accumulates
// its micro-batches, then the all-reduce adds the ranks), so fp32 rounding differs at ~1e-7
// relative per step, and Adam's m/√v passes such a relative change on without amplifying it.
// Measured over these 6 steps (2 and 3 ranks): losses within 6e-8 relative, weights within 7e-7
// absolute (of weights up to 5), Adam moments within 2.4e-6 of their largest element. The bounds
// below sit ~10x above that and far below any real fault (a wrong sample, a missing 1/world, a
// stale shard move the loss in the 3rd digit).
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/run_config.h"
#include "trainer/train/metrics.h"
#include "trainer/train/train_loop.h"

namespace fs = std::filesystem;

namespace {

constexpr double kLossTol = 1e-6, kWeightTol = 1e-5, kMomentTol = 5e-5;

// A byte-level corpus (binidx via `rwkv prep`) and a tiny-model config: global batch 12 as
// 2 samples × 6 micro-batches, 4 steps per mini-epoch, 6 steps.
struct Fixture {
  rwkv::test::TempDir dir{"rwkv-dist-train"};
  std::string config;
  Fixture() {
    std::string text;
    for (int i = 0; i < 600; ++i) text += fmt::format("pack my box with {} dozen liquor jugs; {}\n", i % 23, i % 7);
    rwkv::test::prep_byte_corpus(dir.path(), text);
    config = (dir / "run.yaml").string();
    std::ofstream(config) << fmt::format(R"(model: {{n_layer: 2, n_embd: 32, vocab_size: 256}}
data: {{path: "{}", ctx_len: 16}}
train: {{run_dir: unset, micro_batch: 2, grad_accum: 6, epoch_samples: 48, epoch_count: 100, max_steps: 6,
        device: cpu, threads: 1, dist_timeout_s: 20, seed: 3}}
optimizer: {{lr_init: 3.0e-3, warmup_steps: 0}}
checkpoint: {{every_steps: 1000, keep: 2}}
log: {{every_steps: 1}}
)",
                                         (dir / "tok").string());
  }

  // `rwkv train` on `ranks` processes (torchrun when more than one) into run directory `run`.
  std::string train_cmd(int ranks, const std::string& run, const std::string& sets = "",
                        const std::string& torchrun_args = "") const {
    const std::string launcher =
        ranks == 1 ? "" : fmt::format("{} --standalone --no-python {}--nproc-per-node {} ",
                                      (rwkv::test::source_dir() / ".venv/bin/torchrun").string(), torchrun_args, ranks);
    return fmt::format("OMP_NUM_THREADS=1 {}{} train {} --set train.run_dir={} {} 2>&1", launcher,
                       rwkv::test::rwkv_binary().string(), config, (dir / run).string(), sets);
  }
  std::string train(int ranks, const std::string& run, const std::string& sets = "") const {
    std::string out;
    const int rc = rwkv::test::run(train_cmd(ranks, run, sets), &out);
    INFO(out);
    REQUIRE(rc == 0);
    return out;
  }

  // Per-step losses from run/metrics.jsonl (one record per step), by step number.
  std::map<int64_t, double> losses(const std::string& run) const {
    std::map<int64_t, double> out;
    std::ifstream in(dir / run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto step = std::stoll(line.substr(line.find("\"step\":") + 7));
      out[step] = std::stod(line.substr(line.find("\"loss\":") + 7));
    }
    return out;
  }
  rwkv::trainer::Checkpoint last_checkpoint(const std::string& run) const {
    const auto all = rwkv::trainer::list_checkpoints(dir / run / "checkpoints");
    REQUIRE(!all.empty());
    return rwkv::trainer::load_checkpoint(all.back());
  }
};

void require_same_losses(const std::map<int64_t, double>& got, const std::map<int64_t, double>& want,
                         double tol = kLossTol) {
  REQUIRE(!got.empty());
  for (const auto& [step, loss] : got) {
    INFO("step " << step);
    REQUIRE(want.count(step));
    REQUIRE(loss == Approx(want.at(step)).epsilon(tol));
  }
}

void require_same_state(const rwkv::trainer::Checkpoint& got, const rwkv::trainer::Checkpoint& want,
                        double weight_tol = kWeightTol, double moment_tol = kMomentTol) {
  REQUIRE(got.progress == want.progress);
  REQUIRE(got.weights.size() == want.weights.size());
  for (const auto& [name, w] : want.weights) {
    INFO(name);
    const double diff = (rwkv::test::tensor_named(got.weights, name) - w).abs().max().item<double>();
    CHECK(diff < weight_tol);
  }
  // Adam's moments: the first moment is the same kind of average as the gradient.
  for (const auto& [name, m] : want.optimizer) {
    INFO(name);
    const double scale = m.abs().max().item<double>() + 1e-12;
    CHECK((rwkv::test::tensor_named(got.optimizer, name) - m).abs().max().item<double>() / scale < moment_tol);
  }
}

// The same weights and Adam moments, bit for bit.
void require_identical_state(const rwkv::trainer::Checkpoint& got, const rwkv::trainer::Checkpoint& want) {
  REQUIRE(got.weights.size() == want.weights.size());
  for (const auto& [name, w] : want.weights) {
    INFO(name);
    REQUIRE(torch::equal(rwkv::test::tensor_named(got.weights, name), w));
  }
  for (const auto& [name, m] : want.optimizer) {
    INFO(name);
    REQUIRE(torch::equal(rwkv::test::tensor_named(got.optimizer, name), m));
  }
}

// The moment signal_ranks signals: 3 steps logged (a shell condition; {0} is the test's folder).
constexpr const char* kAfterThreeSteps = "[ -f {0}/sig/metrics.jsonl ] && [ $(wc -l < {0}/sig/metrics.jsonl) -ge 3 ]";

// Starts `n` ranks of `rwkv train` directly (not torchrun, which would tear the run down itself),
// waits until `when` holds (polled), sends `signal` to rank `victim`, waits for the others (then
// kills a STOPped victim) and writes each rank's exit status and its seconds since the signal to
// <dir>/rank<r> (logs in <dir>/log<r>).
void signal_ranks(const Fixture& f, int n, int victim, const std::string& signal, const std::string& sets,
                  const char* when = kAfterThreeSteps) {
  const int port = rwkv::test::free_port();
  const std::string d = f.dir.path().string();
  std::string s;
  for (int r = 0; r < n; ++r)
    s += fmt::format(
        "RANK={0} WORLD_SIZE={1} LOCAL_RANK={0} MASTER_ADDR=127.0.0.1 MASTER_PORT={2} OMP_NUM_THREADS=1 "
        "{3} train {4} --set train.run_dir={5}/sig --set train.max_steps=0 --set train.epoch_count=10000 {6} > {5}/log{0} 2>&1 & p{0}=$!\n",
        r, n, port, rwkv::test::rwkv_binary().string(), f.config, d, sets);
  // A hung rank fails the test instead of hanging it.
  s += "(sleep 100; kill -9";
  for (int r = 0; r < n; ++r) s += fmt::format(" $p{}", r);
  s += ") > /dev/null 2>&1 &\n";
  s += fmt::format(fmt::runtime("for i in $(seq 12000); do " + std::string(when) + " && break; sleep 0.005; done\n"), d);
  s += fmt::format("echo $EPOCHREALTIME > {0}/t0; kill -{1} $p{2}\n", d, signal, victim);
  for (int r = 0; r < n; ++r)
    if (r != victim) s += fmt::format("wait $p{1}; echo $? $EPOCHREALTIME > {0}/end{1}\n", d, r);
  if (signal == "STOP") s += fmt::format("kill -9 $p{}\n", victim);  // the others are done: end it
  s += fmt::format("wait $p{1}; echo $? $EPOCHREALTIME > {0}/end{1}\n", d, victim);
  std::ofstream(f.dir / "signal.sh") << s;
  rwkv::test::run("bash " + (f.dir / "signal.sh").string());
  const double t0 = std::stod(rwkv::test::slurp(f.dir / "t0"));
  for (int r = 0; r < n; ++r) {
    std::istringstream end(rwkv::test::slurp(f.dir / ("end" + std::to_string(r))));
    double t = 0;
    int rc = -1;
    end >> rc >> t;
    std::ofstream(f.dir / ("rank" + std::to_string(r))) << rc << " " << t - t0;
  }
}

}  // namespace

TEST_CASE("grad_accum must be a multiple of the number of ranks", "[dist]") {
  const auto cfg = rwkv::trainer::parse_run_config(R"(model: {n_layer: 1, n_embd: 32, vocab_size: 16}
data: {path: x, ctx_len: 8}
train: {run_dir: r, micro_batch: 2, grad_accum: 4, epoch_samples: 40, epoch_count: 1}
optimizer: {lr_init: 1.0e-3}
)",
                                                   "c.yaml");
  REQUIRE(rwkv::trainer::micro_batches_per_rank(cfg, 0, 1) == 4);
  REQUIRE(rwkv::trainer::micro_batches_per_rank(cfg, 0, 2) == 2);
  REQUIRE(rwkv::trainer::micro_batches_per_rank(cfg, 0, 4) == 1);
  REQUIRE_THROWS_WITH(rwkv::trainer::micro_batches_per_rank(cfg, 0, 3),
                      Catch::Contains("c.yaml: train.grad_accum: 4 micro-batches per step cannot be shared by 3 ranks"));
}

TEST_CASE("torchrun with 2 and 3 ranks, and ZeRO-1, train like one process", "[dist]") {
  Fixture f;
  f.train(1, "one");
  const auto want = f.losses("one");
  REQUIRE(want.size() == 6);
  const auto want_state = f.last_checkpoint("one");
  for (const auto& [ranks, sets] : std::vector<std::pair<int, std::string>>{
           {2, ""}, {3, ""}, {3, "--set train.zero_stage=1 --set train.grad_bucket_mb=0.01"}}) {
    const std::string run = fmt::format("r{}{}", ranks, sets.empty() ? "" : sets.substr(sets.find('=') + 1, 1));
    INFO(ranks << " ranks " << sets);
    const std::string out = f.train(ranks, run, sets);
    CHECK_THAT(out, Catch::Contains(fmt::format("ranks: {} (torchrun, Gloo)", ranks)));
    require_same_losses(f.losses(run), want);
    require_same_state(f.last_checkpoint(run), want_state);
    // Only rank 0 writes files: one TensorBoard events file for the run, however many ranks.
    CHECK(std::distance(std::filesystem::directory_iterator(f.dir / run / "tb"), {}) == 1);
  }
}

TEST_CASE("reducing gradients during backward (overlap) changes no bit of a 2-rank run", "[dist]") {
  Fixture f;
  f.train(1, "one");
  const auto want = f.losses("one");
  const auto want_state = f.last_checkpoint("one");
  // 3 micro-batches per rank (only the last one's backward is overlapped); one bucket, and
  // buckets of 0.01 MiB (one or a few parameters each, so most start during backward).
  for (const std::string& mb : {"25", "0.01"}) {
    INFO("grad_bucket_mb " << mb);
    const std::string b = " --set train.grad_bucket_mb=" + mb;
    f.train(2, "on" + mb, "--set train.overlap_grad_reduce=true" + b);
    f.train(2, "off" + mb, "--set train.overlap_grad_reduce=false" + b);
    // Every bucket holds the same fp32 sums either way: bit-identical losses, weights and moments.
    const auto on = f.losses("on" + mb), off = f.losses("off" + mb);
    REQUIRE(on.size() == 6);
    REQUIRE(on == off);
    const auto on_state = f.last_checkpoint("on" + mb), off_state = f.last_checkpoint("off" + mb);
    require_identical_state(on_state, off_state);
    require_same_losses(on, want);
    require_same_state(on_state, want_state);
  }
}

TEST_CASE("segments on 2 ranks, under ZeRO-2 and overlapped reduction, train like one unsegmented process", "[dist]") {
  Fixture f;
  f.train(1, "one");
  const auto want = f.losses("one");
  const auto want_state = f.last_checkpoint("one");
  // Uneven segments of 5 of ctx 16; the last segment's backward (the first segment's, in the
  // exact mode's reverse order) is the one the buckets overlap.
  for (const std::string& sets : {std::string("--set train.activation_checkpointing=true"),
                                  std::string("--set train.segment_len=5 --set train.zero_stage=2"),
                                  std::string("--set train.segment_len=5 --set train.activation_checkpointing=true")}) {
    INFO(sets);
    const std::string run = fmt::format("seg{}", sets.size());
    f.train(2, run, "--set train.grad_bucket_mb=0.01 " + sets);
    require_same_losses(f.losses(run), want);
    require_same_state(f.last_checkpoint(run), want_state);
  }
}

TEST_CASE("a checkpoint of 2 ranks resumes on 1 and on 3 ranks, also under ZeRO-2", "[dist]") {
  Fixture f;
  f.train(1, "one");
  const auto want = f.losses("one");
  const auto want_state = f.last_checkpoint("one");
  for (const std::string& zero : {"0", "2"}) {
    // Small buckets: parameters cut across buckets and parts, padded parts (ZeRO-2 on 2 ranks here,
    // on 3 after the resume; the other test has ZeRO-1 on 3).
    const std::string z = " --set train.zero_stage=" + zero + " --set train.grad_bucket_mb=0.01";
    f.train(2, "half" + zero, "--set train.max_steps=3" + z);
    REQUIRE(f.last_checkpoint("half" + zero).progress.step == 3);
    for (int ranks : {1, 3}) {
      if (zero == "2" && ranks == 1) continue;  // one rank: nothing to shard
      INFO("zero " << zero << ", resumed on " << ranks);
      const std::string run = fmt::format("resume{}-{}", zero, ranks);
      fs::copy(f.dir / ("half" + zero), f.dir / run, fs::copy_options::recursive);
      const std::string out = f.train(ranks, run, z);
      CHECK_THAT(out, Catch::Contains("resumed from") && Catch::Contains("(step 3,"));
      const auto got = f.losses(run);
      REQUIRE(got.size() == 6);  // 3 from the 2-rank run, 3 after the resume
      require_same_losses(got, want);
      require_same_state(f.last_checkpoint(run), want_state);
    }
  }
}

TEST_CASE("a 4-rank ZeRO-2 checkpoint, one shard per rank, resumes on 1, 2 and 3 ranks and under ZeRO-1", "[dist]") {
  Fixture f;
  // 12 micro-batches of 1 per step: shared by 1, 2, 3 and 4 ranks alike (the global batch stays 12).
  const std::string batch = "--set train.micro_batch=1 --set train.grad_accum=12 --set train.grad_bucket_mb=0.01 ";
  f.train(1, "one", batch);
  const auto want = f.losses("one");
  const auto want_state = f.last_checkpoint("one");
  f.train(4, "four", batch + "--set train.max_steps=3 --set train.zero_stage=2");
  const auto saved = rwkv::trainer::list_checkpoints(f.dir / "four" / "checkpoints");
  REQUIRE(saved.size() == 1);
  for (int r = 0; r < 4; ++r) CHECK(fs::exists(saved.back() / fmt::format("shard-{:05d}-of-00004.safetensors", r)));
  for (const auto& [ranks, zero] : std::vector<std::pair<int, int>>{{1, 0}, {2, 2}, {3, 2}, {2, 1}}) {
    INFO("resumed on " << ranks << " ranks, ZeRO-" << zero);
    const std::string run = fmt::format("from4-{}-{}", ranks, zero);
    fs::copy(f.dir / "four", f.dir / run, fs::copy_options::recursive);
    const std::string out = f.train(ranks, run, batch + fmt::format("--set train.zero_stage={}", zero));
    CHECK_THAT(out, Catch::Contains("resumed from") && Catch::Contains("(step 3,"));
    const auto got = f.losses(run);
    REQUIRE(got.size() == 6);  // 3 from the 4-rank run, 3 after the resume
    require_same_losses(got, want);
    require_same_state(f.last_checkpoint(run), want_state);
    const auto last = rwkv::trainer::list_checkpoints(f.dir / run / "checkpoints").back();
    CHECK(fs::exists(last / fmt::format("shard-{:05d}-of-{:05d}.safetensors", ranks - 1, ranks)));
  }
}

TEST_CASE("ranks killed at random moments of sharded asynchronous saves resume bit-exactly", "[dist]") {
  // scripts/kill_campaign.py, small: 2 torchrun ranks, ZeRO-2, a save every step; 4 SIGKILLs (rank
  // 0, rank 1 and both, each at least once) at moments most of which fall into a save; each
  // start resumes the same command. The full campaign (>= 20 kills, 2 and 4 ranks) is the script's
  // default, run by hand (README.md "Resume").
  rwkv::test::TempDir dir("rwkv-kill-campaign");
  const std::string report = (dir / "report.json").string();
  std::string out;
  const int rc = rwkv::test::run(
      fmt::format("{} {} --plan 2:4 --layers 2 --embd 32 --seed {} --keep {} --json {} --binary {}",
                  rwkv::test::python(), (rwkv::test::source_dir() / "scripts" / "kill_campaign.py").string(),
                  Catch::rngSeed(), dir.path().string(), report, rwkv::test::rwkv_binary().string()),
      &out);
  INFO(out);
  REQUIRE(rc == 0);
  const auto campaign = nlohmann::json::parse(rwkv::test::slurp(report)).at(0);
  std::set<std::string> victims;
  for (const auto& k : campaign.at("kills")) {
    INFO(k.dump());
    victims.insert(k.at("victim").get<std::string>());
    // The newest checkpoint carrying COMPLETE once every process had ended is the one resumed, no
    // step folder lacks COMPLETE, no process outlived torchrun, and temporaries were removed.
    CHECK(k.at("resumed") == k.at("after").at("newest_complete"));
    CHECK(k.at("after").at("torn").empty());
    CHECK(k.at("left_behind").empty());
    CHECK(k.at("torchrun_rc") != 0);
    if (!k.at("after").at("temporaries").empty()) CHECK(k.contains("cleaned_by_start"));
  }
  CHECK(victims == std::set<std::string>{"rank 0", "rank 1", "all"});
  // Independently of the script's own comparison: the killed run's losses and final state against
  // the uninterrupted one, bit for bit.
  const fs::path runs = dir / "ranks2";
  const auto losses = [&](const char* run) {
    std::map<int64_t, std::vector<double>> out;
    std::ifstream in(runs / run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      out[j.at("step").get<int64_t>()].push_back(j.at("loss").get<double>());
    }
    return out;
  };
  const auto want = losses("whole");
  REQUIRE(want.size() == campaign.at("steps").get<size_t>());
  REQUIRE(losses("killed") == want);  // each step logged once, the same bits
  const auto load = [&](const char* run) {
    return rwkv::trainer::load_checkpoint(rwkv::trainer::list_checkpoints(runs / run / "checkpoints").back());
  };
  const auto got = load("killed"), whole = load("whole");
  REQUIRE(got.progress == whole.progress);
  require_identical_state(got, whole);
}

TEST_CASE("a stop signal to one rank stops all ranks at the same step with one checkpoint", "[dist]") {
  Fixture f;
  signal_ranks(f, 2, 1, "TERM", "");
  for (int r : {0, 1}) {
    INFO("rank " << r << ": " << rwkv::test::slurp(f.dir / ("rank" + std::to_string(r))) << rwkv::test::slurp(f.dir / ("log" + std::to_string(r))));
    REQUIRE(rwkv::test::slurp(f.dir / ("rank" + std::to_string(r))).rfind("0 ", 0) == 0);
  }
  const std::string log0 = rwkv::test::slurp(f.dir / "log0");
  INFO(log0);
  REQUIRE_THAT(log0, Catch::Contains("stopped at step"));
  const auto ck = f.last_checkpoint("sig");
  CHECK_THAT(log0, Catch::Contains(fmt::format("stopped at step {};", ck.progress.step)));
  CHECK(ck.progress.step >= 3);
}

TEST_CASE("a rank killed mid-run makes the others exit non-zero within the timeout", "[dist]") {
  Fixture f;
  signal_ranks(f, 3, 1, "KILL", "--set train.dist_timeout_s=5");
  for (int r : {0, 2}) {
    const std::string s = rwkv::test::slurp(f.dir / ("rank" + std::to_string(r))), log = rwkv::test::slurp(f.dir / ("log" + std::to_string(r)));
    INFO("rank " << r << ": " << s << log);
    REQUIRE(std::stoi(s) != 0);
    REQUIRE(std::stoi(s) != 124);                        // not ended by `timeout`
    REQUIRE(std::stod(s.substr(s.find(' ') + 1)) < 20);  // the 5 s limit plus teardown
    REQUIRE_THAT(log, Catch::Contains("rwkv: error: rank " + std::to_string(r) + " of 3"));
  }
}

TEST_CASE("a rank that hangs makes the others exit non-zero after the collective timeout", "[dist]") {
  Fixture f;
  // SIGSTOP keeps its connections open: only train.dist_timeout_s can end the others' wait.
  signal_ranks(f, 2, 1, "STOP", "--set train.dist_timeout_s=4");
  const std::string s = rwkv::test::slurp(f.dir / "rank0"), log = rwkv::test::slurp(f.dir / "log0");
  INFO(s << log);
  REQUIRE(std::stoi(s) != 0);
  const double waited = std::stod(s.substr(s.find(' ') + 1));
  REQUIRE(waited >= 3.5);
  REQUIRE(waited < 20);
  REQUIRE_THAT(log, Catch::Contains("rwkv: error: rank 0 of 2") && Catch::Contains("within 4 s"));
}

TEST_CASE("rank 0 frozen while it writes a checkpoint: the others exit within the collective timeout", "[dist]") {
  Fixture f;
  // Signalled while rank 0 alone writes (its temporary checkpoint folder exists; the model is
  // large enough for the write to last). The others' wait for its word may last
  // checkpoint.write_timeout_s, far beyond this test; only the missing heartbeat ends it sooner.
  // A frozen process keeps its store connection open, as a dead rank 0 does under torchrun, whose
  // agent hosts the store. Synchronous saves: the others wait for rank 0's word right away (with
  // asynchronous ones they train on, and the next collective's timeout is what ends their wait).
  signal_ranks(f, 2, 0, "STOP",
               "--set model.n_embd=384 --set model.n_layer=4 --set checkpoint.every_steps=1 "
               "--set checkpoint.async=false --set checkpoint.write_timeout_s=1000 --set train.dist_timeout_s=4",
               "compgen -G '{0}/sig/checkpoints/.step-*.tmp-*' > /dev/null");
  const std::string s = rwkv::test::slurp(f.dir / "rank1"), log = rwkv::test::slurp(f.dir / "log1");
  INFO(s << log);
  REQUIRE(std::stoi(s) != 0);
  const double waited = std::stod(s.substr(s.find(' ') + 1));
  REQUIRE(waited >= 3.5);
  REQUIRE(waited < 20);
  REQUIRE_THAT(log, Catch::Contains("rwkv: error: rank 1 of 2: rank 0 stopped responding while it was to write the "
                                    "checkpoint: no heartbeat for 4 s"));
}

TEST_CASE("validation on 2 and 3 ranks gives one process's figures for the same weights", "[dist]") {
  Fixture f;
  // A held-out file of its own: 222 positions = 14 windows of 16 (the last short), 7 forward
  // batches of 2, dealt to 3 ranks as 2, 2 and 3.
  fs::create_directories(f.dir / "held");
  std::ofstream(f.dir / "held" / "h.txt") << [] {
    std::string s;
    for (int i = 0; i < 6; ++i) s += "sphinx of black quartz, judge my vow ";
    return s;
  }();
  std::string out;
  REQUIRE(rwkv::test::run(fmt::format("{} prep {} -o {} --tokenizer byte --quiet", rwkv::test::rwkv_binary().string(),
                                      (f.dir / "held").string(), (f.dir / "held_tok").string()),
                          &out) == 0);
  const std::string v = fmt::format("--set validation.path={} --set validation.every_steps=3 --set validation.batch=2",
                                    (f.dir / "held_tok").string());
  f.train(1, "v1", v);
  const auto one = rwkv::trainer::read_validation_records(f.dir / "v1" / "metrics.jsonl");
  REQUIRE(one.size() == 2);  // steps 3 and 6
  for (int ranks : {2, 3}) {
    INFO(ranks << " ranks");
    const std::string run = fmt::format("v{}", ranks);
    f.train(ranks, run, v);
    const auto got = rwkv::trainer::read_validation_records(f.dir / run / "metrics.jsonl");
    REQUIRE(got.size() == one.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].step == one[i].step);
      CHECK(got[i].tokens == 222);  // every window scored once
      CHECK(got[i].tokens == one[i].tokens);
      // The weights differ from one process's by fp32 rounding (see the top of this file).
      CHECK(got[i].loss == Approx(one[i].loss).epsilon(kLossTol));
    }
    // The same weights on one process: `rwkv eval` of the run's final checkpoint, token by token.
    const int rc = rwkv::test::run(
        fmt::format("OMP_NUM_THREADS=1 {} eval {} --data {} --ctx-len 16 --batch 2 --dump-logprobs {} 2>&1",
                    rwkv::test::rwkv_binary().string(), (f.dir / run).string(), (f.dir / "held_tok").string(),
                    (f.dir / (run + ".lp")).string()),
        &out);
    INFO(out);
    REQUIRE(rc == 0);
    double nll = 0;
    int64_t positions = 0;
    std::ifstream lp(f.dir / (run + ".lp"));
    for (std::string line; std::getline(lp, line); ++positions)
      nll -= std::stod(line.substr(line.find("\"logprob\":") + 10));
    REQUIRE(positions == got.back().tokens);
    // Only the order of the last additions differs: the ranks' partial sums, then their sum.
    CHECK(got.back().loss == Approx(nll / static_cast<double>(positions)).epsilon(1e-12));
  }
}

// For a GPU machine with 2 or more GPUs (scripts/gpu-bundle.sh): NCCL, one GPU per rank.
// bf16 parameters with fp32 masters (trainer/dist/parallel_optimizer.h). The ranks run other
// micro-batch groupings than one process, and bf16 GEMMs round differently per shape, so gradients
// differ at bf16's precision (~1e-3 relative), not fp32's; Adam's first steps turn the sign of a
// near-zero gradient into a whole ±lr step of its weight. Single elements therefore differ by up
// to a few lr, and the comparison is of whole tensors: the relative L2 distance of all weights
// (and of all Adam moments), and the losses. The bounds sit ~5x above what these 6 steps measure
// (alike under ZeRO 0, 1, 2).
double relative_distance(const rwkv::NamedTensors& got, const rwkv::NamedTensors& want) {
  double diff = 0, norm = 0;
  for (const auto& [name, w] : want) {
    diff += (rwkv::test::tensor_named(got, name) - w).to(torch::kFloat64).square().sum().item<double>();
    norm += w.to(torch::kFloat64).square().sum().item<double>();
  }
  return std::sqrt(diff / norm);
}

TEST_CASE("bf16 parameters on 2 ranks under ZeRO 0, 1 and 2 train like one bf16 process; checkpoints hold fp32 masters",
          "[dist]") {
  Fixture f;
  const std::string bf16 = "--set train.precision=bf16 --set train.grad_bucket_mb=0.01 ";
  f.train(1, "one", bf16);
  const auto want = f.losses("one");
  REQUIRE(want.size() == 6);
  const auto want_state = f.last_checkpoint("one");
  // The masters carry bits below bf16's precision: they are not the bf16 parameters saved.
  bool finer = false;
  for (const auto& [name, w] : want_state.weights)
    finer = finer || !torch::equal(w, w.to(torch::kBFloat16).to(torch::kFloat32));
  CHECK(finer);
  // And bf16 trains as fp32 does, to bf16's precision.
  f.train(1, "fp32");
  require_same_losses(f.losses("fp32"), want, 2e-3);
  for (const std::string zero : {"0", "1", "2"}) {
    INFO("ZeRO-" << zero);
    const std::string run = "two" + zero;
    f.train(2, run, bf16 + "--set train.zero_stage=" + zero);
    const auto got = f.last_checkpoint(run);
    REQUIRE(got.progress == want_state.progress);
    const double losses = [&] {
      double worst = 0;
      for (const auto& [step, loss] : f.losses(run)) worst = std::max(worst, std::abs(loss / want.at(step) - 1));
      return worst;
    }();
    const double weights = relative_distance(got.weights, want_state.weights);
    const double moments = relative_distance(got.optimizer, want_state.optimizer);
    UNSCOPED_INFO("ZeRO-" << zero << ": losses within " << losses << ", weights " << weights << ", moments " << moments);
    CHECK(losses < 5e-4);   // measured 9.5e-5
    CHECK(weights < 5e-3);  // 9.9e-4
    CHECK(moments < 3e-2);  // 6.4e-3 (a missing 1/world would give 1.0)
  }
}

TEST_CASE("bf16 runs resume bit-exactly, on one process and on 2 ranks under ZeRO-2", "[dist]") {
  Fixture f;
  for (const auto& [ranks, zero] : std::vector<std::pair<int, int>>{{1, 0}, {2, 2}}) {
    INFO(ranks << " ranks, ZeRO-" << zero);
    const std::string sets = fmt::format("--set train.precision=bf16 --set train.zero_stage={} "
                                         "--set train.grad_bucket_mb=0.01 ", zero);
    const std::string whole = fmt::format("whole{}", ranks), split = fmt::format("split{}", ranks);
    f.train(ranks, whole, sets);
    f.train(ranks, split, sets + "--set train.max_steps=3");
    const std::string out = f.train(ranks, split, sets);
    CHECK_THAT(out, Catch::Contains("resumed from") && Catch::Contains("(step 3,"));
    REQUIRE(f.losses(split) == f.losses(whole));
    const auto a = f.last_checkpoint(split), b = f.last_checkpoint(whole);
    REQUIRE(a.progress == b.progress);
    require_identical_state(a, b);
  }
}

TEST_CASE("torchrun on 2 GPUs over NCCL trains like one GPU, also under ZeRO-2", "[dist][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  if (torch::cuda::device_count() < 2) {
    WARN("skipped: needs 2 GPUs, torch sees " << torch::cuda::device_count());
    return;
  }
  Fixture f;
  // fp32 so the comparison is about the parallelism; cuBLAS and the WKV kernel may reduce in
  // another order than on the CPU, hence bounds 10x wider than the Gloo tests'.
  const std::string gpu = "--set train.device=cuda --set train.precision=fp32 ";
  f.train(1, "one", gpu);
  const auto want = f.losses("one");
  const auto want_state = f.last_checkpoint("one");
  for (const std::string& zero : {"0", "2"}) {
    const std::string run = "nccl" + zero;
    const std::string out = f.train(2, run, gpu + "--set train.zero_stage=" + zero);
    CHECK_THAT(out, Catch::Contains("ranks: 2 (torchrun, NCCL)"));
    require_same_losses(f.losses(run), want, 10 * kLossTol);
    require_same_state(f.last_checkpoint(run), want_state, 10 * kWeightTol, 10 * kMomentTol);
  }
}

TEST_CASE("torchrun --max-restarts: a killed rank restarts the run from its last checkpoint", "[dist]") {
  Fixture f;
  const std::string run = (f.dir / "elastic").string();
  const std::string cmd =
      f.train_cmd(2, "elastic", "--set train.max_steps=40 --set checkpoint.every_steps=2", "--max-restarts 1 ");
  // Kills one rank of the first attempt after 5 logged steps; torchrun then restarts both.
  const std::string script = fmt::format(
      "({0}) > {1}.log 2>&1 & t=$!\n"
      "for i in $(seq 1200); do [ -f {1}/metrics.jsonl ] && [ $(wc -l < {1}/metrics.jsonl) -ge 5 ] && break; sleep 0.05; done\n"
      "kill -9 $(pgrep -f '^{2} train .*{1}' | head -1)\n"
      "wait $t; echo \"exit=$?\" >> {1}.log\n",
      cmd, run,
      rwkv::test::rwkv_binary().string());
  std::ofstream(f.dir / "elastic.sh") << script;
  rwkv::test::run("bash " + (f.dir / "elastic.sh").string());
  const std::string log = rwkv::test::slurp(run + ".log");
  INFO(log);
  REQUIRE_THAT(log, Catch::Contains("exit=0"));
  REQUIRE_THAT(log, Catch::Contains("resumed from"));
  REQUIRE(f.last_checkpoint("elastic").progress.step == 40);
}
