// The model's forward (rwkv/README.md "Forward pass"; kernels/README.md "WKV") against an independent evaluation, RNN mode and prefill
// against the parallel forward, and the full model's gradient against central differences.
// Every test uses random O(1) parameters: the reference init's zero matrices would hide most
// of the computation.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "rwkv/model.h"
#include "rwkv/rnn.h"
#include "tests/support/test_util.h"

namespace {

using torch::Tensor;

rwkv::ModelConfig shape(int64_t L, int64_t D, int64_t V, int64_t A = 0, int64_t F = 0) {
  rwkv::ModelConfig c;
  c.n_layer = L;
  c.n_embd = D;
  c.vocab_size = V;
  c.dim_att = A;
  c.dim_ffn = F;
  return c;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// Every parameter random: decays from fast to slow (w = −exp(d) ∈ [−2.7, −0.14]), bonuses and
// mixes spread, matrices scaled 1/√fan_in so activations stay O(1) through the layers.
rwkv::RWKV random_model(const rwkv::ModelConfig& c, torch::Dtype dtype, uint64_t seed) {
  rwkv::RWKV model(c, torch::TensorOptions().dtype(dtype));
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : model->named_parameters()) {
    Tensor p = item.value();
    const std::string& n = item.key();
    if (contains(n, "time_decay")) p.uniform_(-2.0, 1.0, gen);
    else if (contains(n, "time_first")) p.normal_(0.0, 1.0, gen);
    else if (contains(n, "time_mix")) p.uniform_(0.0, 1.0, gen);
    else if (contains(n, "ln") && contains(n, ".weight")) p.uniform_(0.5, 1.5, gen);
    else if (contains(n, "ln")) p.normal_(0.0, 0.2, gen);
    else if (n == "emb.weight") p.normal_(0.0, 1.0, gen);
    else p.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(p.size(1))), gen);
  }
  return model;
}

Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(V, {B, T}, gen, torch::kLong);
}

double max_diff(const Tensor& a, const Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// rwkv/README.md "Forward pass"; kernels/README.md "WKV" evaluated token by token in double, straight from the formulas and the
// parameters: hand-written LayerNorm, the WKV output as the explicit sums over all previous
// tokens (no stabilised recurrence). Shares no code with the model.
Tensor reference_logits(const rwkv::RWKV& model, const Tensor& tokens) {
  std::map<std::string, Tensor> p;
  for (const auto& item : model->named_parameters()) p[item.key()] = item.value().detach().to(torch::kDouble);
  const auto ln = [&](const Tensor& x, const std::string& name) {
    const Tensor mean = x.mean(-1, true);
    const Tensor var = (x - mean).square().mean(-1, true);
    return (x - mean) / torch::sqrt(var + 1e-5) * p.at(name + ".weight") + p.at(name + ".bias");
  };
  const auto sigmoid = [](const Tensor& x) { return 1.0 / (1.0 + torch::exp(-x)); };
  const auto mv = [](const Tensor& w, const Tensor& x) { return torch::matmul(x, w.t()); };

  const int64_t B = tokens.size(0), T = tokens.size(1), L = model->config().n_layer;
  const int64_t D = model->config().n_embd;
  // Per layer: the previous ln1 / ln2 outputs, and every past k and v for the WKV sums.
  std::vector<Tensor> prev_att(L, torch::zeros({B, D}, torch::kDouble));
  std::vector<Tensor> prev_ffn(L, torch::zeros({B, D}, torch::kDouble));
  std::vector<std::vector<Tensor>> ks(L), vs(L);
  std::vector<Tensor> logits;
  for (int64_t t = 0; t < T; ++t) {
    Tensor x = p.at("emb.weight").index_select(0, tokens.select(1, t));
    x = ln(x, "blocks.0.ln0");
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      const auto mix = [&](const Tensor& cur, const Tensor& prev, const std::string& mu) {
        const Tensor m = p.at(b + mu).reshape({-1});
        return cur * m + prev * (1 - m);
      };
      const Tensor xa = ln(x, b + "ln1");
      const Tensor k = mv(p.at(b + "att.key.weight"), mix(xa, prev_att[l], "att.time_mix_k"));
      const Tensor v = mv(p.at(b + "att.value.weight"), mix(xa, prev_att[l], "att.time_mix_v"));
      const Tensor r = mv(p.at(b + "att.receptance.weight"), mix(xa, prev_att[l], "att.time_mix_r"));
      prev_att[l] = xa;
      const Tensor w = -torch::exp(p.at(b + "att.time_decay"));
      const Tensor u = p.at(b + "att.time_first");
      Tensor num = torch::exp(u + k) * v, den = torch::exp(u + k);
      for (int64_t i = 0; i < t; ++i) {  // y_t = Σ_{i<t} e^{(t−1−i)w + k_i} v_i + e^{u+k_t} v_t, over the same without v
        const Tensor e = torch::exp(static_cast<double>(t - 1 - i) * w + ks[l][i]);
        num = num + e * vs[l][i];
        den = den + e;
      }
      ks[l].push_back(k);
      vs[l].push_back(v);
      x = x + mv(p.at(b + "att.output.weight"), sigmoid(r) * (num / den));

      const Tensor xf = ln(x, b + "ln2");
      const Tensor fk = torch::relu(mv(p.at(b + "ffn.key.weight"), mix(xf, prev_ffn[l], "ffn.time_mix_k"))).square();
      const Tensor fr = mv(p.at(b + "ffn.receptance.weight"), mix(xf, prev_ffn[l], "ffn.time_mix_r"));
      prev_ffn[l] = xf;
      x = x + sigmoid(fr) * mv(p.at(b + "ffn.value.weight"), fk);
    }
    logits.push_back(mv(p.at("head.weight"), ln(x, "ln_out")));
  }
  return torch::stack(logits, 1);
}

}  // namespace

TEST_CASE("the parallel forward equals an independent token-by-token evaluation", "[model]") {
  // Double, so the comparison checks the formulas rather than rounding; dim_att ≠ n_embd and
  // dim_ffn ≠ 4·n_embd exercise the configurable shapes.
  for (const auto& c : {shape(3, 16, 29), shape(2, 12, 17, 20, 28)}) {
    rwkv::RWKV model = random_model(c, torch::kDouble, 5);
    const Tensor tokens = random_tokens(2, 24, c.vocab_size, 6);
    const Tensor logits = model->forward(tokens);
    REQUIRE(logits.sizes() == torch::IntArrayRef({2, 24, c.vocab_size}));
    const Tensor expected = reference_logits(model, tokens);
    CHECK(expected.abs().max().item<double>() > 1.0);  // the logits are far from trivial
    CHECK(max_diff(logits, expected) < 1e-9);
  }
}

TEST_CASE("parallel logits equal RNN-mode logits token by token (fp32)", "[model]") {
  const auto c = shape(3, 32, 41);
  rwkv::RWKV model = random_model(c, torch::kFloat, 1);
  const int64_t B = 3, T = 80;
  const Tensor tokens = random_tokens(B, T, c.vocab_size, 2);
  const Tensor parallel = model->forward(tokens).detach();

  rwkv::RnnState state = rwkv::initial_state(c, B, torch::TensorOptions());
  REQUIRE(state.size() == 3);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    const Tensor step = rwkv::rnn_step(model, tokens.select(1, t), state);
    REQUIRE(step.sizes() == torch::IntArrayRef({B, c.vocab_size}));
    worst = std::max(worst, max_diff(step, parallel.select(1, t)));
  }
  CHECK(parallel.abs().max().item<double>() > 1.0);
  CHECK(worst <= 1e-4);
  // The state is the 5 vectors per layer of kernels/README.md "WKV".
  for (const auto& layer : state) {
    CHECK(layer.att.prev_x.sizes() == torch::IntArrayRef({B, 32}));
    CHECK(layer.ffn.prev_x.sizes() == torch::IntArrayRef({B, 32}));
    for (const Tensor& s : {layer.att.wkv.aa, layer.att.wkv.bb, layer.att.wkv.pp}) {
      CHECK(s.sizes() == torch::IntArrayRef({B, 32}));
      CHECK(s.scalar_type() == torch::kFloat);
    }
  }
}

TEST_CASE("prefill then RNN steps equals the parallel forward over the whole sequence", "[model]") {
  const auto c = shape(2, 24, 37, 16, 40);
  rwkv::RWKV model = random_model(c, torch::kFloat, 3);
  const int64_t B = 2, T = 70, prompt = 29;
  const Tensor tokens = random_tokens(B, T, c.vocab_size, 4);
  const Tensor parallel = model->forward(tokens).detach();

  rwkv::Prefill pre = rwkv::prefill(model, tokens.narrow(1, 0, prompt));
  double worst = max_diff(pre.logits, parallel.select(1, prompt - 1));
  for (int64_t t = prompt; t < T; ++t) {
    worst = std::max(worst, max_diff(rwkv::rnn_step(model, tokens.select(1, t), pre.state),
                                     parallel.select(1, t)));
  }
  CHECK(worst <= 1e-4);
}

TEST_CASE("prefill_continue leaves the state and logits of the full forward, chunk after chunk", "[model]") {
  // The reference: forward(tokens, state), every block at every position. Prefill skips most of
  // the last block away from the end (rwkv/rnn.h); chunks of 1, 2 and more tokens cover its tail
  // cases (no earlier position in the chunk, one, several), one layer and three.
  for (const int64_t L : {int64_t{1}, int64_t{3}}) {
    INFO("n_layer " << L);
    const auto c = shape(L, 24, 37, 16, 40);
    rwkv::RWKV model = random_model(c, torch::kFloat, 5 + L);
    const int64_t B = 2;
    const Tensor tokens = random_tokens(B, 12, c.vocab_size, 6);
    const auto opts = torch::TensorOptions().dtype(torch::kFloat);
    rwkv::RnnState ours = rwkv::initial_state(c, B, opts), ref = rwkv::initial_state(c, B, opts);
    int64_t at = 0;
    for (const int64_t n : {int64_t{1}, int64_t{2}, int64_t{5}, int64_t{1}, int64_t{3}}) {
      INFO("chunk of " << n << " at " << at);
      const Tensor chunk = tokens.narrow(1, at, n);
      const Tensor logits = rwkv::prefill_continue(model, chunk, ours);
      Tensor full;
      {
        torch::NoGradGuard no_grad;
        full = model->forward(chunk, ref).select(1, n - 1);
      }
      CHECK(full.abs().max().item<double>() > 0.1);
      CHECK(max_diff(logits, full) <= 1e-5);
      for (int64_t l = 0; l < L; ++l) {
        const auto& a = ours[static_cast<size_t>(l)];
        const auto& b = ref[static_cast<size_t>(l)];
        CHECK(max_diff(a.att.prev_x, b.att.prev_x) <= 1e-6);
        CHECK(max_diff(a.ffn.prev_x, b.ffn.prev_x) <= 1e-6);
        CHECK(max_diff(a.att.wkv.aa, b.att.wkv.aa) <= 1e-5 * (1 + b.att.wkv.aa.abs().max().item<double>()));
        CHECK(max_diff(a.att.wkv.bb, b.att.wkv.bb) <= 1e-5 * (1 + b.att.wkv.bb.abs().max().item<double>()));
        CHECK(max_diff(a.att.wkv.pp, b.att.wkv.pp) <= 1e-5);
      }
      at += n;
    }
  }
}

TEST_CASE("the model's gradient matches central differences (double)", "[model]") {
  const auto c = shape(2, 8, 13);
  rwkv::RWKV model = random_model(c, torch::kDouble, 9);
  const Tensor tokens = random_tokens(2, 7, c.vocab_size, 10);
  const Tensor weights = torch::randn({2, 7, c.vocab_size}, torch::kDouble);
  const auto loss = [&] { return (model->forward(tokens) * weights).sum(); };

  model->zero_grad();
  loss().backward();
  std::map<std::string, Tensor> params;
  for (const auto& item : model->named_parameters()) params[item.key()] = item.value();

  const std::vector<std::pair<std::string, std::vector<int64_t>>> probes = {
      {"blocks.0.att.time_decay", {3}},     {"blocks.1.att.time_first", {5}},
      {"blocks.0.att.time_mix_k", {0, 0, 2}}, {"blocks.1.att.time_mix_v", {0, 0, 7}},
      {"blocks.1.att.time_mix_r", {0, 0, 1}}, {"blocks.0.att.key.weight", {4, 6}},
      {"blocks.1.att.value.weight", {2, 3}},  {"blocks.0.att.output.weight", {1, 5}},
      {"blocks.1.ffn.key.weight", {20, 4}},   {"blocks.0.ffn.value.weight", {3, 17}},
      {"blocks.0.ffn.time_mix_r", {0, 0, 4}}, {"blocks.0.ln0.weight", {6}},
      {"ln_out.bias", {2}},                   {"head.weight", {11, 0}},
      {"emb.weight", {tokens[0][3].item<int64_t>(), 5}}};
  torch::NoGradGuard no_grad;
  for (const auto& [name, index] : probes) {
    INFO(name);
    Tensor p = params.at(name);
    Tensor entry = p, grad = p.grad();
    for (int64_t i : index) {
      entry = entry[i];
      grad = grad[i];
    }
    const double analytic = grad.item<double>();
    const double h = 1e-5, x0 = entry.item<double>();  // ≈ the optimum (ε_double)^(1/3) for central differences
    entry.fill_(x0 + h);
    const double up = loss().item<double>();
    entry.fill_(x0 - h);
    const double down = loss().item<double>();
    entry.fill_(x0);
    const double numeric = (up - down) / (2 * h);
    CHECK(std::abs(analytic) > 1e-6);  // the probe is not a dead entry
    CHECK(analytic == Approx(numeric).epsilon(1e-6).margin(1e-8));
  }
}

TEST_CASE("a state carried across chunks gives the one-pass logits and gradients (double)", "[model]") {
  const auto c = shape(2, 8, 11);
  rwkv::RWKV model = random_model(c, torch::kDouble, 12);
  const Tensor tokens = random_tokens(2, 20, c.vocab_size, 13);
  const Tensor weights = torch::randn({2, 20, c.vocab_size}, torch::kDouble);

  const auto grads = [&] {
    std::vector<Tensor> g;
    for (const auto& p : model->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  model->zero_grad();
  const Tensor whole = model->forward(tokens);
  (whole * weights).sum().backward();
  const auto g_whole = grads();

  model->zero_grad();
  rwkv::RnnState state = rwkv::initial_state(c, 2, torch::TensorOptions().dtype(torch::kDouble));
  const Tensor first = model->forward(tokens.narrow(1, 0, 9), state);
  const Tensor second = model->forward(tokens.narrow(1, 9, 11), state);
  const Tensor chunked = torch::cat({first, second}, 1);
  (chunked * weights).sum().backward();
  const auto g_chunked = grads();

  CHECK(max_diff(whole, chunked) < 1e-12);
  for (size_t i = 0; i < g_whole.size(); ++i) CHECK(max_diff(g_whole[i], g_chunked[i]) < 1e-10);
}

TEST_CASE("a bf16 model computes in bf16 and stays near the fp32 model", "[model]") {
  const auto c = shape(2, 32, 41);
  rwkv::RWKV model = random_model(c, torch::kFloat, 14);
  const Tensor tokens = random_tokens(2, 32, c.vocab_size, 15);
  const Tensor fp32 = model->forward(tokens).detach();
  model->to(torch::kBFloat16);
  const Tensor bf16 = model->forward(tokens).detach();
  CHECK(bf16.scalar_type() == torch::kBFloat16);
  // bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 2e-3 per operation); through two
  // layers of random weights the logits keep within a few percent of their scale.
  const double scale = fp32.abs().max().item<double>();
  CHECK(max_diff(bf16, fp32) <= 0.05 * scale);
}

TEST_CASE("on CUDA the model matches the CPU, RNN mode matches parallel, bf16 stays near fp32",
          "[model][cuda]") {
  RWKV_REQUIRE_CUDA_OR_SKIP();
  const auto c = shape(2, 64, 53);
  rwkv::RWKV model = random_model(c, torch::kFloat, 21);
  const int64_t T = 96, prompt = 40;
  const Tensor tokens = random_tokens(2, T, c.vocab_size, 22);
  const Tensor cpu = model->forward(tokens).detach();
  model->to(torch::kCUDA);
  const Tensor gpu_tokens = tokens.to(torch::kCUDA);
  CHECK(max_diff(model->forward(gpu_tokens).detach().cpu(), cpu) <= 1e-4);

  rwkv::Prefill pre = rwkv::prefill(model, gpu_tokens.narrow(1, 0, prompt));
  double worst = max_diff(pre.logits.cpu(), cpu.select(1, prompt - 1));
  for (int64_t t = prompt; t < T; ++t) {
    worst = std::max(worst, max_diff(rwkv::rnn_step(model, gpu_tokens.select(1, t), pre.state).cpu(),
                                     cpu.select(1, t)));
  }
  CHECK(worst <= 1e-4);

  model->to(torch::kBFloat16);
  const Tensor bf16 = model->forward(gpu_tokens).detach();
  CHECK(bf16.scalar_type() == torch::kBFloat16);
  CHECK(max_diff(bf16.cpu(), cpu) <= 0.05 * cpu.abs().max().item<double>());
}
