// LR schedule against its formula in double, our Adam against torch::optim::Adam, lr multipliers,
// gradient clipping. (L2Wrap with the cross-entropy: tests/trainer/train/test_cross_entropy_l2wrap.cpp.)
#include <catch2/catch.hpp>

#include <cmath>

#include "tests/support/clip_reference.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/optim/optimizer.h"
#include "tests/support/test_util.h"

using namespace rwkv::trainer;

TEST_CASE("LR schedule: warmup, constant phase, exponential decay to lr_final", "[optim]") {
  LrSchedule s;
  s.lr_init = 6e-4;
  s.lr_final = 1e-5;
  s.steps = 1000;
  s.constant_steps = 400;
  s.warmup_steps = 50;
  const auto decay = [&](double progress) { return 6e-4 * std::pow(1e-5 / 6e-4, progress); };
  CHECK(learning_rate(s, 0) == Approx(6e-4 * 0.2).epsilon(1e-12));
  CHECK(learning_rate(s, 25) == Approx(6e-4 * (0.2 + 0.8 * 25 / 50.0)).epsilon(1e-12));
  CHECK(learning_rate(s, 49) == Approx(6e-4 * (0.2 + 0.8 * 49 / 50.0)).epsilon(1e-12));
  CHECK(learning_rate(s, 50) == Approx(6e-4).epsilon(1e-12));
  CHECK(learning_rate(s, 400) == Approx(6e-4).epsilon(1e-12));
  CHECK(learning_rate(s, 550) == Approx(decay(150 / 600.0)).epsilon(1e-12));
  CHECK(learning_rate(s, 700) == Approx(std::sqrt(6e-4 * 1e-5)).epsilon(1e-12));  // halfway: geometric mean
  CHECK(learning_rate(s, 1000) == Approx(1e-5).epsilon(1e-12));
  CHECK(learning_rate(s, 5000) == Approx(1e-5).epsilon(1e-12));
  // warmup overlapping the decay multiplies it
  s.constant_steps = 0;
  CHECK(learning_rate(s, 10) == Approx(decay(0.01) * (0.2 + 0.8 * 10 / 50.0)).epsilon(1e-12));
  // lr_final == lr_init: constant
  s.lr_final = s.lr_init;
  CHECK(learning_rate(s, 900) == Approx(6e-4).epsilon(1e-12));
}

TEST_CASE("lr multipliers match the last name component or a prefix wildcard", "[optim]") {
  const LrMult m{{"time_decay", 2}, {"time_first", 3}};
  CHECK(lr_multiplier("blocks.3.att.time_decay", m) == 2);
  CHECK(lr_multiplier("blocks.3.att.time_first", m) == 3);
  CHECK(lr_multiplier("blocks.3.att.time_mix_k", m) == 1);
  CHECK(lr_multiplier("head.weight", m) == 1);
  CHECK(lr_multiplier("blocks.0.att.time_mix_r", {{"time_*", 5}}) == 5);
  CHECK(lr_multiplier("blocks.0.att.key.weight", {{"time_*", 5}}) == 1);
}

namespace {

// Adam's formula in double (decoupled weight decay on): the reference the fused updates are held to.
void adam_in_double(torch::Tensor& pd, torch::Tensor& md, torch::Tensor& vd, const torch::Tensor& gd, double lr,
                    int64_t t, const AdamConfig& oc) {
  md = oc.beta1 * md + (1 - oc.beta1) * gd;
  vd = oc.beta2 * vd + (1 - oc.beta2) * gd * gd;
  const double bc1 = 1 - std::pow(oc.beta1, t), bc2 = 1 - std::pow(oc.beta2, t);
  pd = pd * (1 - lr * oc.weight_decay) - lr / bc1 * md / (vd.sqrt() / std::sqrt(bc2) + oc.eps);
}

}  // namespace

TEST_CASE("the fused CPU Adam update equals the formula in double over many threaded chunks", "[optim]") {
  // 3 chunks of kernels/adam_cpu.cpp's grain plus a tail that fills no SIMD vector.
  const int64_t n = 3 * (1 << 15) + 7;
  torch::manual_seed(11);
  AdamConfig oc;
  oc.weight_decay = 0.05;
  torch::Tensor p = torch::randn({n}), m = torch::zeros({n}), v = torch::zeros({n});
  torch::Tensor pd = p.to(torch::kFloat64), md = m.to(torch::kFloat64), vd = v.to(torch::kFloat64);
  const double lr = 3e-3;
  for (int64_t t = 1; t <= 3; ++t) {
    const torch::Tensor g = torch::randn({n}) * (t == 2 ? 1e-4 : 1.0);  // a step of tiny gradients too
    adam_update(p, g, m, v, lr, /*decay=*/true, t, oc);
    adam_in_double(pd, md, vd, g.to(torch::kFloat64), lr, t, oc);
  }
  CHECK((p.to(torch::kFloat64) - pd).abs().max().item<double>() < 1e-6);
  // m can cancel to near zero (gradients of both signs): fp32 rounding of its O(1) terms, absolute.
  CHECK((m.to(torch::kFloat64) - md).abs().max().item<double>() < 1e-6);
  CHECK(((v.to(torch::kFloat64) - vd).abs() / (vd.abs() + 1e-12)).max().item<double>() < 1e-5);
}

TEST_CASE("Adam with the clip coefficient folded in equals clipping first, bit for bit, and the formula in double",
          "[optim]") {
  // The fused CPU pass (contiguous) against clip_gradients + the update unscaled; the fallback
  // (a transposed, non-contiguous parameter) against the formula in double. Step 2 does not clip.
  torch::manual_seed(14);
  AdamConfig oc;
  oc.weight_decay = 0.05;
  const double lr = 3e-3;
  const int64_t n = 3 * (1 << 15) + 7;
  torch::Tensor p = torch::randn({n}), m = torch::zeros({n}), v = torch::zeros({n});
  torch::Tensor pc = p.clone(), mc = m.clone(), vc = v.clone();
  torch::Tensor q = torch::randn({33, 64}).t(), qm = torch::zeros({64, 33}), qv = torch::zeros({64, 33});
  REQUIRE_FALSE(q.is_contiguous());
  torch::Tensor qd = q.to(torch::kFloat64), qmd = qm.to(torch::kFloat64), qvd = qv.to(torch::kFloat64);
  for (int64_t t = 1; t <= 3; ++t) {
    const torch::Tensor g = torch::randn({n}) * 3, gq = torch::randn({64, 33}) * 3;
    const double norm = t == 2 ? 0.5 : global_grad_norm({g, gq}, torch::kCPU).item<double>();
    const double scale = clip_coefficient(norm, 1.0);
    REQUIRE(scale == (t == 2 ? 1.0 : 1.0 / (norm + 1e-6)));
    const torch::Tensor g_before = g.clone();
    adam_update(p, g, m, v, lr, /*decay=*/true, t, oc, scale);
    CHECK(torch::equal(g, g_before));  // the gradient is read, not rewritten
    const torch::Tensor clipped = g.clone();
    rwkv::test::clip_gradients({clipped}, norm, 1.0);
    adam_update(pc, clipped, mc, vc, lr, /*decay=*/true, t, oc);
    CHECK(torch::equal(p, pc));
    CHECK(torch::equal(m, mc));
    CHECK(torch::equal(v, vc));

    adam_update(q, gq, qm, qv, lr, /*decay=*/true, t, oc, scale);
    adam_in_double(qd, qmd, qvd, gq.to(torch::kFloat64) * scale, lr, t, oc);
  }
  CHECK((q.to(torch::kFloat64) - qd).abs().max().item<double>() < 1e-6);
  CHECK((qm.to(torch::kFloat64) - qmd).abs().max().item<double>() < 1e-6);
  CHECK(((qv.to(torch::kFloat64) - qvd).abs() / (qvd.abs() + 1e-12)).max().item<double>() < 1e-5);
}

TEST_CASE("the multi-tensor fused AdamW group (the CUDA path) equals the formula in double", "[optim]") {
  // Run on the CPU, where LibTorch's fused AdamW also exists: two tensors of one group, decay on,
  // three steps (a step count off by one in the kernel would change the bias corrections by 2×).
  torch::manual_seed(12);
  AdamConfig oc;
  oc.weight_decay = 0.05;
  const double lr = 3e-3;
  AdamGroup group;
  std::vector<torch::Tensor> pd, md, vd;
  for (const int64_t n : {int64_t{1000}, int64_t{37}}) {
    group.params.push_back(torch::randn({n}));
    group.exp_avgs.push_back(torch::zeros({n}));
    group.exp_avg_sqs.push_back(torch::zeros({n}));
    pd.push_back(group.params.back().to(torch::kFloat64));
    md.push_back(torch::zeros({n}, torch::kFloat64));
    vd.push_back(torch::zeros({n}, torch::kFloat64));
  }
  for (int64_t t = 1; t <= 3; ++t) {
    group.grads.clear();
    for (const auto& p : group.params) group.grads.push_back(torch::randn(p.sizes()) * (t == 2 ? 1e-4 : 1.0));
    adam_update_group(group, lr, /*decay=*/true, t, oc);
    const double bc1 = 1 - std::pow(oc.beta1, t), bc2 = 1 - std::pow(oc.beta2, t);
    for (size_t i = 0; i < pd.size(); ++i) {
      const torch::Tensor gd = group.grads[i].to(torch::kFloat64);
      md[i] = oc.beta1 * md[i] + (1 - oc.beta1) * gd;
      vd[i] = oc.beta2 * vd[i] + (1 - oc.beta2) * gd * gd;
      pd[i] = pd[i] * (1 - lr * oc.weight_decay) - lr / bc1 * md[i] / (vd[i].sqrt() / std::sqrt(bc2) + oc.eps);
    }
  }
  for (size_t i = 0; i < pd.size(); ++i) {
    CHECK((group.params[i].to(torch::kFloat64) - pd[i]).abs().max().item<double>() < 1e-6);
    CHECK((group.exp_avgs[i].to(torch::kFloat64) - md[i]).abs().max().item<double>() < 1e-6);
    CHECK(((group.exp_avg_sqs[i].to(torch::kFloat64) - vd[i]).abs() / (vd[i].abs() + 1e-12)).max().item<double>() <
          1e-5);
  }
}

// The parameters' .grad, in order: what Adam::step takes for fp32 training.
std::vector<torch::Tensor> grads_of(const rwkv::NamedTensors& params) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, p] : params) out.push_back(p.grad());
  return out;
}

TEST_CASE("Adam on CUDA (fused groups by learning rate) equals Adam on the CPU", "[optim][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  torch::manual_seed(13);
  AdamConfig oc;
  oc.weight_decay = 0.1;
  const std::vector<std::string> names = {"blocks.0.att.key.weight", "blocks.0.att.time_decay",
                                          "blocks.0.att.time_first", "head.weight"};
  rwkv::NamedTensors cpu, gpu;
  for (size_t i = 0; i < names.size(); ++i) {
    const torch::Tensor p0 = i % 3 == 0 ? torch::randn({33, 17}) : torch::randn({17});
    cpu.push_back({names[i], p0.clone().requires_grad_()});
    gpu.push_back({names[i], p0.cuda().requires_grad_()});
  }
  Adam on_cpu(cpu, oc), on_gpu(gpu, oc);
  const LrMult mult{{"time_decay", 2}, {"time_first", 3}};
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < names.size(); ++i) {
      const torch::Tensor g = torch::randn(cpu[i].tensor.sizes());
      cpu[i].tensor.mutable_grad() = g;
      gpu[i].tensor.mutable_grad() = g.cuda();
    }
    on_cpu.step(1e-2, mult, grads_of(cpu));
    on_gpu.step(1e-2, mult, grads_of(gpu));
  }
  for (size_t i = 0; i < names.size(); ++i) {
    INFO(names[i]);
    CHECK((gpu[i].tensor.detach().cpu() - cpu[i].tensor.detach()).abs().max().item<double>() < 1e-5);
  }
}

TEST_CASE("Adam equals torch::optim::Adam/AdamW step for step, per-group lr, decay on matrices", "[optim]") {
  torch::manual_seed(3);
  const auto w0 = torch::randn({4, 5}), d0 = torch::randn({5});
  AdamConfig oc;
  oc.weight_decay = 0.1;
  auto w = w0.clone().requires_grad_(), d = d0.clone().requires_grad_();
  Adam ours({{"blocks.0.att.key.weight", w}, {"blocks.0.att.time_decay", d}}, oc);

  auto rw = w0.clone().requires_grad_(), rd = d0.clone().requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{rw},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(std::vector<torch::Tensor>{rd},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(2e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0)));
  torch::optim::AdamW ref(groups, torch::optim::AdamWOptions(1e-2));

  for (int i = 0; i < 5; ++i) {
    const auto x = torch::randn({5});
    for (auto* p : {&w, &d, &rw, &rd}) p->mutable_grad() = torch::Tensor();
    (torch::matmul(w, x * d).pow(2).sum()).backward();
    (torch::matmul(rw, x * rd).pow(2).sum()).backward();
    ours.step(1e-2, {{"time_decay", 2}}, {w.grad(), d.grad()});
    ref.step();
  }
  CHECK(ours.steps() == 5);
  CHECK((w - rw).abs().max().item<float>() < 1e-6);
  CHECK((d - rd).abs().max().item<float>() < 1e-6);
}

TEST_CASE("global gradient norm and clipping at 1.0", "[optim]") {
  auto a = torch::zeros({3}).requires_grad_(), b = torch::zeros({2, 2}).requires_grad_();
  a.mutable_grad() = torch::tensor({3.0f, 0.0f, 0.0f});
  b.mutable_grad() = torch::tensor({{0.0f, 4.0f}, {0.0f, 0.0f}});
  const std::vector<torch::Tensor> p{a.grad(), b.grad()};
  const double n = global_grad_norm(p, torch::kCPU).item<double>();
  CHECK(n == Approx(5.0));
  rwkv::test::clip_gradients(p, n, 1.0);
  CHECK(global_grad_norm(p, torch::kCPU).item<double>() == Approx(1.0).epsilon(1e-5));
  CHECK(a.grad()[0].item<float>() == Approx(0.6).epsilon(1e-5));
  rwkv::test::clip_gradients(p, 0.5, 1.0);  // below the limit: untouched
  CHECK(a.grad()[0].item<float>() == Approx(0.6).epsilon(1e-5));
  b.mutable_grad()[0][0] = std::nanf("");
  CHECK(std::isnan(global_grad_norm(p, torch::kCPU).item<double>()));
  CHECK(global_grad_norm({}, torch::kCPU).item<double>() == 0.0);
}
