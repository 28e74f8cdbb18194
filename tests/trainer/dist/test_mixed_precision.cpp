// Mixed precision as the reference trains (issue 14): bf16 parameters in the module, fp32 masters,
// Adam moments and gradient sums in the optimizer (trainer/dist/grad_store.h,
// trainer/dist/parallel_optimizer.h), on one process; the multi-rank runs are in
// test_dist_train.cpp.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/support/clip_reference.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"
#include "trainer/bench/cpu_memory_meter.h"
#include "trainer/dist/communicator.h"
#include "trainer/dist/grad_store.h"
#include "trainer/dist/parallel_optimizer.h"
#include "trainer/train/train_step.h"
#include "trainer/train/trained_model.h"

using namespace rwkv::trainer;
namespace tt = rwkv::test::trainer;

TEST_CASE("the fp32 gradient store sums bf16 gradients in fp32 and keeps no bf16 .grad", "[optim]") {
  // 1 + 2^-9 + 2^-9: each small term rounds away in bf16 (8 significant bits), not in fp32.
  auto p = torch::zeros({3}, torch::kBFloat16).requires_grad_();
  rwkv::GradStore store({p}, rwkv::GradStore::Mode::fp32);
  std::vector<float> heard;  // the store's sum after each arrival
  store.listen([&](size_t i, const torch::Tensor& g) {
    CHECK(i == 0);
    CHECK(g.scalar_type() == torch::kFloat32);
    CHECK(g.is_same(store.get(0)));
    heard.push_back(g[0].item<float>());
  });
  for (const float c : {1.0f, 1.0f / 512, 1.0f / 512}) {
    (p.to(torch::kFloat32) * c).sum().backward();
    CHECK_FALSE(p.grad().defined());
  }
  const auto sum = store.get(0);
  REQUIRE(sum.scalar_type() == torch::kFloat32);
  CHECK(sum[0].item<float>() == 1.0f + 2.0f / 512);
  CHECK((torch::tensor({1.0f}, torch::kBFloat16) + torch::tensor({1.0f / 512}, torch::kBFloat16))
            .item<float>() == 1.0f);  // what accumulating in bf16 would have kept
  CHECK(heard == std::vector<float>{1.0f, 1.0f + 1.0f / 512, 1.0f + 2.0f / 512});
  store.drop();
  CHECK_FALSE(store.get(0).defined());

  // A streaming store keeps nothing: the listener is the only one to see the gradient.
  auto q = torch::ones({4}, torch::kFloat32).requires_grad_();
  rwkv::GradStore stream({q}, rwkv::GradStore::Mode::stream);
  int arrivals = 0;
  stream.listen([&](size_t, const torch::Tensor& g) { arrivals += g.numel() == 4; });
  (q * 3).sum().backward();
  CHECK(arrivals == 1);
  CHECK_FALSE(q.grad().defined());
  CHECK_FALSE(stream.get(0).defined());
}

TEST_CASE("a gradient store with homes sums in them: no other gradient memory after the first arrival", "[optim]") {
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    INFO(c10::toString(dtype));
    auto p = torch::zeros({2, 3}, dtype).requires_grad_();
    auto q = torch::zeros({4}, dtype).requires_grad_();  // no gradient in this backward
    rwkv::GradStore store({p, q}, dtype == torch::kFloat32 ? rwkv::GradStore::Mode::autograd
                                                           : rwkv::GradStore::Mode::fp32);
    auto bucket = torch::full({10}, 7.0f);  // stale contents: a first arrival must not add to them
    store.home(0, bucket.narrow(0, 0, 6));
    store.home(1, bucket.narrow(0, 6, 4));
    const auto x = torch::arange(6, torch::kFloat32).view({2, 3});
    for (int round = 0; round < 2; ++round) {
      for (const float c : {1.0f, 2.0f}) (p.to(torch::kFloat32) * x * c).sum().backward();
      // The sum is a view of its home: x·1 + x·2, and no gradient but that one.
      REQUIRE(store.get(0).defined());
      CHECK(store.get(0).data_ptr() == bucket.data_ptr());
      CHECK(torch::equal(bucket.narrow(0, 0, 6), (x * 3).view({-1})));
      if (dtype == torch::kFloat32) CHECK(p.grad().data_ptr() == bucket.data_ptr());
      else CHECK_FALSE(p.grad().defined());
      CHECK_FALSE(store.get(1).defined());
      store.settle(1);  // no gradient: zeros in its home
      CHECK(torch::equal(bucket.narrow(0, 6, 4), torch::zeros({4})));
      CHECK(store.get(1).data_ptr() == bucket.narrow(0, 6, 4).data_ptr());
      store.drop();
      bucket.fill_(7.0f);
    }
  }
}

namespace {

// Parameters of a few shapes (names give the lr multipliers and decay their usual meaning).
rwkv::NamedTensors some_parameters(uint64_t seed) {
  torch::manual_seed(seed);
  return {{"emb.weight", torch::randn({7, 5})},
          {"blocks.0.att.time_decay", torch::randn({5})},
          {"blocks.0.att.key.weight", torch::randn({5, 5})},
          {"head.weight", torch::randn({7, 5})}};
}

}  // namespace

TEST_CASE("bf16 parameters: every ZeRO stage updates fp32 masters exactly as fp32 Adam, the parameters are their bf16 cast",
          "[optim]") {
  rwkv::Communicator alone(rwkv::DistEnv{}, torch::kCPU, std::chrono::seconds(1));
  AdamConfig oc;
  oc.weight_decay = 0.1;
  const LrMult mult{{"time_decay", 2}};
  for (const auto& [stage, built_bf16] : std::vector<std::pair<int64_t, bool>>{
           {0, false}, {1, false}, {2, false}, {0, true}, {1, true}, {2, true}}) {
    INFO("zero_stage " << stage << (built_bf16 ? ", parameters given in bf16" : ", parameters given in fp32"));
    // The reference: fp32 Adam on fp32 copies, fed the same gradients. A model built in bf16 (as
    // training builds it) starts its masters from the bf16 values.
    rwkv::NamedTensors ref = some_parameters(5), ours = some_parameters(5);
    for (auto& [name, t] : ours) {
      if (built_bf16) t = t.to(torch::kBFloat16);
      t.requires_grad_();
    }
    if (built_bf16)
      for (auto& [name, t] : ref) t = t.to(torch::kBFloat16).to(torch::kFloat32);
    Adam adam(ref, oc);
    // Buckets of 64 bytes: parameters cut across buckets.
    auto opt = make_parallel_optimizer(
        ours, oc, alone, ParallelOptions{.zero_stage = stage, .bucket_bytes = 64, .compute_dtype = torch::kBFloat16});
    for (const auto& [name, t] : ours) REQUIRE(t.scalar_type() == torch::kBFloat16);
    for (int step = 0; step < 3; ++step) {
      opt->drop_gradients();
      std::vector<torch::Tensor> grads;
      for (size_t i = 0; i < ours.size(); ++i) grads.push_back(torch::zeros(ref[i].tensor.sizes()));
      // Two micro-batches, gradients exactly representable in bf16, summed by the optimizer.
      for (int micro = 0; micro < 2; ++micro) {
        torch::Tensor loss = torch::zeros({});
        for (size_t i = 0; i < ours.size(); ++i) {
          const auto g = torch::randn(ref[i].tensor.sizes()).to(torch::kBFloat16);
          grads[i] += g.to(torch::kFloat32);
          loss = loss + (ours[i].tensor * g).sum().to(torch::kFloat32);
        }
        loss.backward();
        opt->after_backward();
        for (const auto& [name, t] : ours) REQUIRE_FALSE(t.grad().defined());
      }
      opt->reduce_gradients();
      const double norm = opt->grad_norm().item<double>();
      CHECK(norm == Approx(global_grad_norm(grads, torch::kCPU).item<double>()).epsilon(1e-6));
      opt->clip(norm, 1.0);
      rwkv::test::clip_gradients(grads, norm, 1.0);
      opt->step(1e-2, mult);
      adam.step(1e-2, mult, grads);
    }
    int64_t total = 0;
    for (const auto& [name, t] : ref) total += t.numel();
    auto weights = torch::empty({total}), m = torch::empty({total}), v = torch::empty({total});
    opt->copy_state(weights, m, v);
    int64_t at = 0;
    const auto state = adam.state();
    for (size_t i = 0; i < ref.size(); ++i) {
        const auto& [name, r] = ref[i];
      INFO(name);
      const auto mine = weights.narrow(0, at, r.numel()).view(r.sizes());
      CHECK(torch::equal(mine, r));  // the same fp32 arithmetic, bit for bit
      CHECK(torch::equal(m.narrow(0, at, r.numel()).view(r.sizes()), rwkv::test::tensor_named(state, "exp_avg." + name)));
      CHECK(torch::equal(ours[i].tensor, r.to(torch::kBFloat16)));
      // The masters carry bits the bf16 parameters cannot hold.
      CHECK_FALSE(torch::equal(mine, mine.to(torch::kBFloat16).to(torch::kFloat32)));
      at += r.numel();
    }

    // Masters reloaded by slices from the weights' names (a resume) replace the shard.
    auto again = some_parameters(5);
    auto reopened = make_parallel_optimizer(
        again, oc, alone, ParallelOptions{.zero_stage = stage, .bucket_bytes = 64, .compute_dtype = torch::kBFloat16});
    reopened->load_masters([&](const std::string& key, c10::IntArrayRef shape, int64_t offset, int64_t length) {
      const auto& t = rwkv::test::tensor_named(ref, key);
      REQUIRE(t.sizes() == shape);
      return t.reshape({-1}).narrow(0, offset, length);
    });
    auto reloaded = torch::empty({total});
    reopened->copy_state(reloaded, m, v);
    CHECK(torch::equal(reloaded, weights));
  }
}

TEST_CASE("ZeRO-2 holds no whole gradient: a step's peak is the whole gradient lower than ZeRO-1's", "[optim]") {
  // A model whose gradient dominates (V = 4096, D = 64: 0.5M parameters in the embedding and the
  // head), one sample of 8 tokens. One process: the shard is the whole flat view, so the
  // difference is the full-size gradient storage ZeRO-1 keeps until its reduction.
  tt::OneThread one;
  rwkv::Communicator alone(rwkv::DistEnv{}, torch::kCPU, std::chrono::seconds(1));
  rwkv::test::TempDir dir;
  const auto peak_of = [&](int64_t stage, const std::string& precision) {
    const RunConfig cfg = parse_run_config(
        "model: {n_layer: 1, n_embd: 64, vocab_size: 4096}\n"
        "data: {path: synthetic, ctx_len: 8}\n"
        "train: {run_dir: \"" + dir.path().string() + "\", micro_batch: 1, grad_accum: 2, epoch_samples: 8, epoch_count: 1,\n"
        "        device: cpu}\n"
        "optimizer: {lr_init: 1.0e-3}\n",
        "zero2.yaml",
        {parse_override(fmt::format("train.zero_stage={}", stage)),
         parse_override(fmt::format("train.precision={}", precision)), parse_override("train.grad_bucket_mb=0.0625")});
    TrainedModel m = build_trained_model(cfg, torch::kCPU);
    TrainStep step(cfg, rwkv::named_parameters(*m.model), m.forward, alone, torch::kCPU);
    const auto tokens = torch::randint(4096, {1, 9}, torch::kLong);
    step.train_step(cfg.stages.at(0), 0, 2, [&](int64_t) { return tokens; });  // moments allocated
    CpuMemoryMeter meter;
    const StepResult r = step.train_step(cfg.stages.at(0), 1, 2, [&](int64_t) { return tokens; });
    REQUIRE(r.applied);
    return std::pair{meter.peak(), static_cast<double>(rwkv::parameter_count(*m.model))};
  };
  for (const std::string precision : {"fp32", "bf16"}) {
    INFO(precision);
    const auto [zero1, params] = peak_of(1, precision);
    const auto [zero2, unused] = peak_of(2, precision);
    const double gradient = params * 4;  // the full gradient, summed in fp32 under either precision
    UNSCOPED_INFO("peak ZeRO-1 " << zero1 << " B, ZeRO-2 " << zero2 << " B, full gradient " << gradient << " B");
    // ZeRO-2's staging is a few buckets of 64 KiB and one parameter's incoming gradient at a time.
    CHECK(zero1 - zero2 > 0.5 * gradient);
  }
}
