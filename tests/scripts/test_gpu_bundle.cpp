// scripts/gpu-bundle.sh + the bundle's run.sh, checked the way a bare GPU machine will use them:
// the bundle copied out of the checkout, run under `env -i` with no network, the checkout (build
// tree and project venv) hidden, and a python3 whose torch lives at another path. On a machine
// without a GPU, `run.sh --cpu` must pass to the end (its timed step next to `bench predict`'s
// prediction of it), a run past its deadline must still report, and plain `run.sh` must refuse.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace fs = std::filesystem;
using rwkv::test::run;

namespace {

// A python3 that reports `torch_dir` for the torch query and is the system python otherwise.
void write_fake_python(const fs::path& file, const fs::path& torch_dir) {
  std::ofstream(file) << fmt::format(R"(#!/bin/sh
case "$*" in
  *"import os, torch"*) echo "{}"; exit 0 ;;
esac
exec /usr/bin/python3 "$@"
)",
                                     torch_dir.string());
  fs::permissions(file, fs::perms::owner_all);
}

}  // namespace

TEST_CASE("the GPU bundle runs from a copy under env -i, offline, with the checkout hidden", "[scripts]") {
  rwkv::test::TempDir dir("rwkv-bundle");
  const fs::path src = rwkv::test::source_dir(), bin = rwkv::test::binary_dir();
  std::string out;
  INFO(out);
  REQUIRE(run(fmt::format("cd {} && BUILD_DIR={} scripts/gpu-bundle.sh {} 2>&1", src.string(), bin.string(),
                          (dir / "bundle").string()),
              &out) == 0);
  CHECK_THAT(out, Catch::Contains("MiB"));

  // torch at another path: hard links (no copy of its gigabytes), so hiding the venv hides nothing of it.
  std::string found;
  REQUIRE(run(rwkv::test::python() + " -c 'import os, torch; print(os.path.dirname(torch.__file__))'", &found) == 0);
  const fs::path torch_src = fs::path(found.substr(0, found.find_last_not_of("\n") + 1));
  fs::create_directories(dir / "site");
  if (run(fmt::format("cp -al {} {} && cp -al {} {}", torch_src.string(), (dir / "site" / "torch").string(),
                      (torch_src.parent_path() / "nvidia").string(), (dir / "site" / "nvidia").string()),
          &out) != 0) {
    WARN("skipped: cannot hard-link the torch wheel next to the test's temp dir: " << out);
    return;
  }
  write_fake_python(dir / "python3", dir / "site" / "torch");

  const std::string bundle = (dir / "bundle").string();
  const auto isolated = [&](const std::string& args, std::string* output, const std::string& env = "") {
    // unshare: a mount namespace with the checkout (and a build dir outside it) covered by an
    // empty folder, and no network. Where that is refused (not root), env -i alone.
    fs::create_directories(dir / "empty");
    std::string hide = fmt::format("mount --bind {0} {1}", (dir / "empty").string(), src.string());
    if (!fs::equivalent(bin.parent_path(), src)) hide += fmt::format(" && mount --bind {} {}", (dir / "empty").string(), bin.string());
    const std::string inner =
        fmt::format("env -i PYTHON={} RWKV_BUNDLE_WORK={} {} {}/run.sh {}", (dir / "python3").string(),
                    (dir / "work").string(), env, bundle, args);
    const std::string cmd = fmt::format("unshare -m -n sh -c '{} && test ! -e {} && {}' 2>&1", hide,
                                        (src / ".venv").string(), inner);
    if (run("unshare -m -n true 2>/dev/null") == 0) return run(cmd, output);
    WARN("unshare refused (not root?): checking under env -i without hiding the checkout or the network");
    return run(inner + " 2>&1", output);
  };

  const int rc = isolated("--cpu " + (dir / "out-cpu").string(), &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("run.sh: all checks passed"));
  CHECK_THAT(out, Catch::Contains("resumed from"));
  std::ifstream json(dir / "out-cpu" / "figures.json");
  const auto figures = nlohmann::json::parse(json);
  for (const char* bench : {"wkv_seq", "train_small", "predict_train_small", "generate_small"})
    CHECK(figures.contains(bench));
  CHECK(figures.at("mode") == "cpu");
  // The prediction is of the step that was timed, at the GEMM rate and bandwidth measured with it.
  const auto& train = figures.at("train_small");
  const auto& predicted = figures.at("predict_train_small");
  CHECK(predicted.at("tokens") == train.at("tokens"));
  CHECK(predicted.at("gpu").at("gemm_tflops") == train.at("gemm_tflops").at("median"));
  CHECK(predicted.at("gpu").at("bandwidth_gbs") == train.at("copy_gbs").at("median"));
  CHECK_THAT(out, Catch::Contains("measured next to predicted"));
  // What comes back from a lent machine is a handful of files: the bundle writes two, and its
  // scratch (libraries, training run) lies elsewhere.
  std::vector<std::string> written;
  for (const auto& e : fs::recursive_directory_iterator(dir / "out-cpu")) written.push_back(e.path().filename().string());
  std::sort(written.begin(), written.end());
  CHECK(written == std::vector<std::string>{"figures.json", "log.txt"});

  // Past its deadline the bundle skips every check but still ends with the table and the list of
  // what did not run, exiting non-zero: a lent GPU's few minutes never end without a report.
  std::string late;
  CHECK(isolated("--cpu " + (dir / "out-late").string(), &late, "RWKV_BUNDLE_DEADLINE_S=1") != 0);
  INFO(late);
  CHECK_THAT(late, Catch::Contains("FAILED or skipped") && Catch::Contains("skipped, past the 1 s deadline") &&
                       Catch::Contains("bench train"));
  CHECK(nlohmann::json::parse(std::ifstream(dir / "out-late" / "figures.json")).at("mode") == "cpu");

  if (torch::cuda::device_count() == 0) {
    std::string refused;
    CHECK(isolated((dir / "out-gpu").string(), &refused) != 0);
    INFO(refused);
    CHECK_THAT(refused, Catch::Contains("torch sees no CUDA device"));
  }
}
