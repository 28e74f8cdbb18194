// `rwkv bench memory` (trainer/bench/bench_memory.cpp) on 2 Gloo ranks under torchrun: each
// rank's tensor memory per category of a real training step (the counting allocator), next to
// `rwkv plan`'s estimate (trainer/dist/memory_plan.h), in fp32 and with bf16 parameters, under
// ZeRO-0, 1 and 2. Asserted within ±15% of the plan: every category the plan has a term for —
//   weights    the module's parameters (4 or 2 bytes each);
//   optimizer  fp32 masters and Adam moments with what stays between steps (DDP's buckets, the
//              ZeRO gradient shard);
//   grads      the whole fp32 sums a backward leaves (ZeRO-1); none under DDP (they live in its
//              buckets, counted as kept) and ZeRO-2 (never whole);
//   forward, act+head (a micro-batch's peak: activations, the head, ZeRO-2's staging), update
//   (the ZeRO collectives' buffers) and the step's peak.
// The 72M-parameter figures on 2 and 4 ranks are in README.md.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "rwkv/model_config.h"
#include "tests/support/test_util.h"
#include "trainer/dist/memory_plan.h"

TEST_CASE("bench memory on 2 Gloo ranks: every category within 15% of the plan, fp32 and bf16, ZeRO-0/1/2", "[dist]") {
  rwkv::test::TempDir dir("rwkv-bench-memory");
  const std::string model = (dir / "model.yaml").string();
  std::ofstream(model) << "model: {n_layer: 2, n_embd: 64, vocab_size: 512}\n";
  const double params = rwkv::planned_parameter_count({.n_layer = 2, .n_embd = 64, .vocab_size = 512});
  for (const std::string precision : {"fp32", "bf16"}) {
    for (int zero : {0, 1, 2}) {
      INFO(precision << ", ZeRO-" << zero);
      const std::string json = (dir / fmt::format("{}-z{}.json", precision, zero)).string();
      std::string out;
      const int rc = rwkv::test::run(
          fmt::format("OMP_NUM_THREADS=1 {} --standalone --no-python --nproc-per-node 2 {} bench memory {} "
                      "--micro-batch 2 --ctx 32 --zero-stage {} --set train.threads=1 --set train.precision={} "
                      "--set train.grad_bucket_mb=0.05 "
                      "--json {} 2>&1",
                      (rwkv::test::source_dir() / ".venv/bin/torchrun").string(), rwkv::test::rwkv_binary().string(),
                      model, zero, precision, json),
          &out);
      INFO(out);
      REQUIRE(rc == 0);
      CHECK_THAT(out, Catch::Contains("2 rank(s) (Gloo)"));
      const auto j = nlohmann::json::parse(rwkv::test::slurp(json));
      REQUIRE(j.at("measured").size() == 2);
      const auto& plan = j.at("planned");
      for (const auto& rank : j.at("measured")) {
        INFO(rank.dump());
        // Independently of the plan: the module's parameters, 4 or 2 bytes each.
        CHECK(rank.at("weights").get<double>() == (precision == "fp32" ? 4 : 2) * params);
        for (const char* k : {"weights", "optimizer", "forward", "act+head", "update", "peak"}) {
          INFO(k);
          if (plan.at(k).get<double>() < 0) continue;  // no update buffers under DDP
          CHECK(rank.at(k).get<double>() / plan.at(k).get<double>() == Approx(1).margin(0.15));
        }
        // Gradients a backward leaves beside what is kept between steps: the whole sums (ZeRO-1),
        // none where DDP keeps them in its buckets or ZeRO-2 never holds them whole (less than a
        // tenth of one there).
        if (plan.at("grads").get<double>() > 0)
          CHECK(rank.at("grads").get<double>() / plan.at("grads").get<double>() == Approx(1).margin(0.15));
        else
          CHECK(rank.at("grads").get<double>() < 0.1 * 4 * params);
      }
    }
  }
}
