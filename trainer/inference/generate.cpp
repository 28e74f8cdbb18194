#include "trainer/inference/generate.h"

#include <chrono>
#include <stdexcept>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <cmath>

#include "rwkv/rnn.h"

namespace rwkv::trainer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

void check_sampling_options(const SamplingOptions& o) {
  if (!(std::isfinite(o.temperature) && o.temperature >= 0))
    throw std::invalid_argument(
        fmt::format("--temperature: expected a finite value >= 0 (0 is greedy), got {}", o.temperature));
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw std::invalid_argument(fmt::format("--top-p: expected a value in (0, 1], got {}", o.top_p));
}

int64_t sample_token(const torch::Tensor& logits, const SamplingOptions& o, at::Generator& generator) {
  TORCH_CHECK(logits.dim() == 1, "sample_token takes one row of logits (V), got ", logits.sizes());
  check_sampling_options(o);
  const torch::Tensor l = logits.detach().to(torch::kCPU, torch::kFloat64);
  if (o.temperature == 0) return l.argmax().item<int64_t>();
  const torch::Tensor probs = torch::softmax(l / o.temperature, 0);
  if (o.top_p >= 1) return torch::multinomial(probs, 1, /*replacement=*/false, generator).item<int64_t>();
  // Stable descending sort: equal probabilities keep id order, so the head is argmax's choice.
  const auto [sorted, order] = probs.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true);
  // Keep token k while the mass before it is still short of top_p.
  const torch::Tensor before = sorted.cumsum(0) - sorted;
  torch::Tensor kept = sorted * (before < o.top_p).to(sorted.dtype());
  kept = kept / kept.sum();
  const int64_t pick = torch::multinomial(kept, 1, /*replacement=*/false, generator).item<int64_t>();
  return order[pick].item<int64_t>();
}

int64_t state_bytes(const RnnState& state) {
  int64_t bytes = 0;
  for (const LayerState& layer : state)
    for (const torch::Tensor& t : {layer.att.prev_x, layer.att.wkv.aa, layer.att.wkv.bb, layer.att.wkv.pp, layer.ffn.prev_x})
      bytes += static_cast<int64_t>(t.nbytes());
  return bytes;
}

Generation generate(RWKV& model, const std::vector<int64_t>& prompt, int64_t max_tokens, const SamplingOptions& options,
                    const std::function<void(const GenerationProgress&)>& on_token) {
  check_sampling_options(options);
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt has no tokens");
  const int64_t V = model->config().vocab_size;
  for (const int64_t t : prompt)
    if (t < 0 || t >= V) throw std::invalid_argument(fmt::format("generate: prompt token {} is outside the vocabulary [0, {})", t, V));
  torch::NoGradGuard no_grad;
  model->eval();
  const torch::Device device = model->emb->weight.device();
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);

  Generation out;
  auto start = Clock::now();
  Prefill pre = prefill(model, torch::tensor(prompt, torch::kLong).unsqueeze(0).to(device));
  torch::Tensor logits = pre.logits[0].to(torch::kCPU);  // waits for the device before the clock is read
  out.prefill_seconds = seconds_since(start);

  start = Clock::now();
  for (int64_t i = 0; i < max_tokens; ++i) {
    const int64_t next = sample_token(logits, options, generator);
    out.tokens.push_back(next);
    logits = rnn_step(model, torch::tensor({next}, torch::kLong).to(device), pre.state)[0];
    if (on_token) on_token({i + 1, next, &pre.state});
  }
  out.decode_seconds = seconds_since(start);
  return out;
}

}  // namespace rwkv::trainer
