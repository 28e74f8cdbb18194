#include "trainer/inference/evaluate.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "rwkv/rnn.h"

namespace rwkv::trainer {

double EvalResult::loss() const { return nll / static_cast<double>(positions); }
double EvalResult::perplexity() const { return std::exp(loss()); }
double EvalResult::bits_per_byte() const { return nll / std::log(2.0) / static_cast<double>(bytes); }

std::vector<int64_t> token_byte_lengths(const data::Tokenizer& tokenizer, int64_t vocab_size) {
  std::vector<int64_t> out(static_cast<size_t>(vocab_size), 0);
  const int64_t known = std::min(vocab_size, tokenizer.vocab_size());  // ids past the tokenizer's never decode
  for (int32_t id = 0; id < known; ++id)
    if (id != tokenizer.eod_id()) out[static_cast<size_t>(id)] = static_cast<int64_t>(tokenizer.decode({&id, 1}).size());
  return out;
}

EvalResult evaluate(RWKV& model, const data::TokenDataset& data, const std::vector<int64_t>& token_bytes,
                    const EvalOptions& o, const std::function<void(int64_t, int64_t, double)>& on_position) {
  if (o.ctx_len < 1 || o.batch < 1 || o.segment_len < 0)
    throw std::invalid_argument("evaluate: ctx_len and batch must be positive, segment_len non-negative");
  const int64_t segment = o.segment_len > 0 ? o.segment_len : o.ctx_len;
  const int64_t n = o.max_tokens > 0 ? std::min(o.max_tokens, data.size()) : data.size();
  if (n < 2) throw std::runtime_error(fmt::format("{}: {} token(s) to evaluate; need at least 2", data.describe(), n));
  const int64_t V = model->config().vocab_size;
  torch::NoGradGuard no_grad;
  model->eval();
  const torch::Device device = model->emb->weight.device();

  EvalResult r;
  // Window w has inputs [w·T, w·T + len) and targets one further; full windows go `batch` at a
  // time, the stream's shorter last window alone.
  for (int64_t start = 0; start < n - 1;) {
    const int64_t len = std::min(o.ctx_len, n - 1 - start);
    const int64_t windows = len == o.ctx_len ? std::min(o.batch, (n - 1 - start) / o.ctx_len) : 1;
    torch::Tensor tokens = torch::empty({windows, len + 1}, torch::kLong);
    for (int64_t w = 0; w < windows; ++w) data.read(start + w * len, len + 1, tokens[w].data_ptr<int64_t>());
    const auto bad = ((tokens < 0) | (tokens >= V)).nonzero();
    if (bad.size(0) > 0) {
      const int64_t w = bad[0][0].item<int64_t>(), t = bad[0][1].item<int64_t>();
      throw std::runtime_error(fmt::format("{}: token {} at position {} is outside the model's vocabulary [0, {})",
                                           data.describe(), tokens[w][t].item<int64_t>(), start + w * len + t, V));
    }
    // A long window runs in segments carrying the RNN state (the same prediction; only one
    // segment's logits exist at a time).
    const torch::Tensor inputs = tokens.narrow(1, 0, len).to(device);
    RnnState state = initial_state(model->config(), windows, model->emb->weight.options());
    for (int64_t b = 0, e; b < len; b = e) {
      e = std::min(len, b + segment);
      const torch::Tensor logits = model->forward(inputs.narrow(1, b, e - b), state).to(torch::kCPU, torch::kFloat32);
      const torch::Tensor targets = tokens.narrow(1, 1 + b, e - b);
      const torch::Tensor logp =
          torch::log_softmax(logits, -1).gather(2, targets.unsqueeze(2)).squeeze(2).to(torch::kFloat64);
      const auto lp = logp.accessor<double, 2>();
      const auto tg = targets.accessor<int64_t, 2>();
      for (int64_t w = 0; w < windows; ++w)
        for (int64_t t = 0; t < e - b; ++t) {
          r.nll -= lp[w][t];
          r.bytes += token_bytes.at(static_cast<size_t>(tg[w][t]));
          if (on_position) on_position(start + w * len + b + t + 1, tg[w][t], lp[w][t]);
        }
    }
    r.positions += windows * len;
    start += windows * len;
  }
  return r;
}

}  // namespace rwkv::trainer
