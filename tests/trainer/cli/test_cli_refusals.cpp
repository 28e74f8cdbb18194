// The real `rwkv` binary as an adversarial user meets it: a table of bad inputs, each with the
// exit status (2: usage or config, 1: a failure while working) and a fragment of its one
// message; none may print a C++ backtrace, and none may change the user's files. Then two
// trainers on one run directory, and a run on a full disk (a small tmpfs, where mounting is
// allowed).
#include <catch2/catch.hpp>

#include <sys/mount.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "trainer/checkpoint/checkpoint.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace {

std::string bin() { return rwkv::test::rwkv_binary().string(); }

// A byte-tokenized corpus at <dir>/tok and a tiny-model config whose run goes to `run_dir`.
std::string prepare(const fs::path& dir, const fs::path& run_dir, const std::string& extra = "") {
  return rwkv::test::write_tiny_run(dir, run_dir, 2, extra);
}

// Every file under `root` with its content, to show that nothing changed.
std::map<std::string, std::string> tree(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out[fs::relative(e.path(), root).string()] = rwkv::test::slurp(e.path());
  return out;
}

bool has_backtrace(const std::string& out) {
  return out.find("Exception raised from") != std::string::npos || out.find("frame #") != std::string::npos ||
         out.find("terminate called") != std::string::npos;
}

struct Case {
  std::string args;      // after the binary; {d}: the test folder, {run}: the run, {cfg}: its config
  int rc;
  std::string message;   // a fragment of the output
};

}  // namespace

TEST_CASE("bad inputs to the `rwkv` binary: exit status, one message, no backtrace, no damage", "[cli]") {
  rwkv::test::TempDir dir("rwkv-refusals");
  const fs::path d = dir.path(), run = d / "run";
  const std::string cfg = prepare(d, run);
  std::string out;
  const int trained = rwkv::test::run(fmt::format("{} train {} --set train.max_steps=4", bin(), cfg), &out);
  INFO(out);
  REQUIRE(trained == 0);
  std::ofstream(d / "notes.txt") << "the user's notes\n";
  fs::create_directories(d / "photos");
  std::ofstream(d / "photos" / "cat.jpg") << "meow";
  const auto run_before = tree(run), photos_before = tree(d / "photos");

  const std::vector<Case> cases = {
      // export: the source, a folder holding it, an unrelated file or folder
      {"export {run} --format hf --out {run}", 2, "is the input"},
      {"export {run}/checkpoints/step-00000004 --format hf --out {run}/checkpoints --force", 2, "holds the input"},
      {"export {run}/checkpoints/step-00000004 --format hf --out {run}/checkpoints/step-00000004 --force", 2, "is the input"},
      {"export {run} --out {run}/checkpoints/step-00000004/shard-00000-of-00001.safetensors --force", 2,
       "exists inside the input"},
      {"export {run} --out {d}/notes.txt", 2, "already exists; pass --force"},
      {"export {run} --out {d}/notes.txt --force", 2, "not an earlier output of ours"},
      {"export {run} --format hf --out {d}/photos --force", 2, "not an earlier output of ours"},
      {"export {run} --out {d}/no-such-dir/w.pth", 2, "does not exist"},
      // an earlier export of ours: refused without --force, replaced with it
      {"export {run} --format hf --out {d}/hf", 0, "exported"},
      {"export {run} --format hf --out {d}/hf", 2, "pass --force"},
      {"export {run} --format hf --out {d}/hf --force", 0, "exported"},
      {"export {run} --out {d}/w.pth", 0, "exported"},
      {"export {run} --out {d}/w.pth --force", 0, "exported"},
      {"export {run} --format safetensors --out {d}/w.pth --force", 2, "not an earlier output of ours"},
      {"import {d}/w.pth --out {d}/w.pth --force", 2, "is the input"},
      {"import {d}/w.pth --out {d}/notes.txt", 2, "expected a .pth or .safetensors"},
      // prep, eval, bench outputs
      {"prep {d}/text -o {d}/tok --quiet", 2, "already exists; pass --force"},
      {"prep {d}/text -o {d}/tok --quiet --force", 0, "wrote"},
      {"eval {run} --data {d}/tok --dump-logprobs {d}/notes.txt --force", 2, "not an earlier output of ours"},
      {"bench wkv --B 1 --T 4 --C 4 --runs 1 --warmup 0 --json {d}/notes.txt --force", 2, "not an earlier output"},
      {"bench wkv --device bogus", 2, "expected auto, cpu, cuda or cuda:N"},
      {"bench predict {cfg} --gpu a100", 2, "--gpu: a100 not in {h100,h200}"},
      {"bench predict {cfg} --peak-tflops nan", 2, "expected a finite number > 0, got 'nan'"},
      {"bench predict {cfg} --bandwidth-gbs -4000", 2, "expected a finite number > 0, got '-4000'"},
      {"bench predict {cfg} --launch-us 1us", 2, "expected a number, got '1us'"},
      {"bench predict {cfg} --micro-batch 0", 2, "--micro-batch"},
      {"bench predict {cfg} --set model.n_embd=-8", 2, "model.n_embd"},
      {"bench predict {d}/missing.yaml", 2, "missing.yaml"},
      {"bench predict {cfg} --json {d}/notes.txt --force", 2, "not an earlier output"},
      // train: paths, flags and an earlier run's checkpoints
      {"train {cfg} --resume --restart", 2, "excludes"},
      {"train {cfg} --set checkpoint.dir={d}/notes.txt", 2, "checkpoint.dir"},
      {"train {cfg} --set train.run_dir={d}/notes.txt", 2, "train.run_dir"},
      {"train {cfg} --set checkpoint.resume=never", 2, "--restart"},
      {"train {cfg} --set model.n_embd=33", 2, "cannot resume"},
      // shapes whose memory need no machine here has: refused before anything is allocated or written
      {"train {cfg} --set model.n_layer=100000 --set model.n_embd=4096 --set train.run_dir={d}/huge", 2,
       "does not fit in memory: model.n_layer 100000, model.n_embd 4096"},
      {"train {cfg} --set train.micro_batch=4000000 --set train.epoch_samples=4000000 --set train.run_dir={d}/huge", 2,
       "with train.micro_batch 4000000"},
      {"bench train {cfg} --device cpu --set model.n_layer=100000 --set model.n_embd=4096", 2, "does not fit in memory"},
  };
  for (const auto& c : cases) {
    const std::string args = fmt::format(fmt::runtime(c.args), fmt::arg("d", d.string()), fmt::arg("run", run.string()),
                                         fmt::arg("cfg", cfg));
    std::string output;
    const int rc = rwkv::test::run(bin() + " " + args, &output);
    INFO("rwkv " << args << "\n" << output);
    CHECK(rc == c.rc);
    CHECK_THAT(output, Catch::Contains(c.message));
    CHECK_FALSE(has_backtrace(output));
  }
  auto run_after = tree(run);
  run_after.erase("rwkv.lock");  // the refused trainers took the lock (and left it free)
  auto run_expected = run_before;
  run_expected.erase("rwkv.lock");
  // Those refused after taking the lock told it to the run's log: appended, nothing rewritten.
  const std::string log_before = run_expected["train.log"], log_after = run_after["train.log"];
  CHECK(log_after.rfind(log_before, 0) == 0);
  CHECK_THAT(log_after.substr(log_before.size()), Catch::Contains("cannot resume") && Catch::Contains("--restart"));
  run_after.erase("train.log");
  run_expected.erase("train.log");
  CHECK(run_after == run_expected);
  CHECK(tree(d / "photos") == photos_before);
  CHECK(rwkv::test::slurp(d / "notes.txt") == "the user's notes\n");
  CHECK_FALSE(fs::exists(d / "huge"));  // the refused oversized runs wrote nothing
}

TEST_CASE("a second `rwkv train` on a run directory in use is refused; the first one is unharmed", "[cli]") {
  rwkv::test::TempDir dir("rwkv-two-trainers");
  const std::string cfg = prepare(dir.path(), dir / "run");
  const std::string metrics = (dir / "run" / "metrics.jsonl").string();
  const std::string script = fmt::format(
      "{0} train {1} > {2}/first.log 2>&1 & pid=$!; "
      "for i in $(seq 1200); do [ -f {3} ] && [ $(wc -l < {3}) -ge 2 ] && break; sleep 0.05; done; "
      "{0} train {1} --set train.max_steps=3; echo \"second=$?\"; kill -TERM $pid; wait $pid; echo \"first=$?\"",
      bin(), cfg, dir.path().string(), metrics);
  std::string out;
  rwkv::test::run("bash -c '" + script + "'", &out);
  INFO(out << rwkv::test::slurp(dir / "first.log"));
  CHECK_THAT(out, Catch::Contains("another `rwkv train`") && Catch::Contains("second=1") && Catch::Contains("first=0"));
  CHECK_FALSE(has_backtrace(out));
  // the first run's metrics are whole and each step appears once
  std::vector<int64_t> steps;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) steps.push_back(nlohmann::json::parse(line).at("step").get<int64_t>());
  REQUIRE(steps.size() >= 2);
  for (size_t i = 0; i < steps.size(); ++i) CHECK(steps[i] == static_cast<int64_t>(i + 1));
}

TEST_CASE("`rwkv train` on a full disk: warnings naming metrics.jsonl, no torn line, a clear failure", "[cli]") {
  rwkv::test::TempDir dir("rwkv-full-disk-cli");
  const fs::path disk = dir / "disk";
  fs::create_directories(disk);
  if (::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=256k") != 0) {
    WARN("skipped: cannot mount a tmpfs here (" << std::strerror(errno) << ")");
    return;
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{disk};
  {
    // leave 5 pages (tmpfs allocates whole pages): rwkv.lock, train.log, config.yaml, some metrics
    // lines and TensorBoard events; none for a checkpoint
    std::ofstream filler(disk / "filler", std::ios::binary);
    const std::string page(4096, 'x');
    for (int i = 0; i < 256 / 4 - 5; ++i) filler << page;
  }
  const std::string cfg = prepare(dir.path(), disk / "run");
  std::string out;
  const int rc = rwkv::test::run(fmt::format("{} train {} --set train.max_steps=150 --set checkpoint.every_steps=1000",
                                             bin(), cfg),
                                 &out);
  INFO(out);
  CHECK(rc == 1);
  CHECK_THAT(out, Catch::Contains("metrics.jsonl: cannot write a metrics record: No space left on device"));
  CHECK_THAT(out, Catch::Contains("rwkv: error:") && Catch::Contains("No space left on device"));
  CHECK_FALSE(has_backtrace(out));
  std::ifstream in(disk / "run" / "metrics.jsonl");
  int64_t previous = 0;
  for (std::string line; std::getline(in, line);) {
    const int64_t step = nlohmann::json::parse(line).at("step").get<int64_t>();  // throws on a torn line
    CHECK(step == previous + 1);
    previous = step;
  }
  CHECK(previous > 0);
  CHECK(previous < 150);
}
