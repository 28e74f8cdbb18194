#include "rwkv/init.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <stdexcept>
#include <vector>

namespace rwkv {
namespace {

// One parameter's rule. PerChannel tensors have one value per channel c (time_* vectors).
struct Rule {
  enum class Kind { Ones, Zeros, Uniform, Orthogonal, PerChannel } kind;
  std::string text;
  double scale = 0;                        // Uniform: bound; Orthogonal: gain
  std::function<double(int64_t)> channel;  // PerChannel: value at channel c
};

// The reference's gain for its orthogonal matrices: √(rows/cols) when the matrix is taller than
// wide, else 1 (ffn.key (4D, D) → 2, att.value (A, D) → 1 for A ≤ D).
double orthogonal_gain(int64_t rows, int64_t cols) {
  return rows > cols ? std::sqrt(static_cast<double>(rows) / static_cast<double>(cols)) : 1.0;
}

Rule orthogonal_rule(int64_t rows, int64_t cols, double factor) {
  const double gain = factor * orthogonal_gain(rows, cols);
  return {Rule::Kind::Orthogonal, fmt::format("orthogonal, gain {:.6g}", gain), gain, nullptr};
}

Rule zeros() { return {Rule::Kind::Zeros, "zeros", 0, nullptr}; }

Rule layer_norm_rule(const std::string& tensor) {
  if (tensor == "weight") return {Rule::Kind::Ones, "ones", 0, nullptr};
  return zeros();
}

// Rules of the tensors inside block `l` ("att.time_decay", "ln1.weight", ...).
Rule block_rule(const std::string& local, int64_t l, const ModelConfig& config) {
  const int64_t L = config.n_layer, D = config.n_embd, A = config.att(), F = config.ffn();
  // r0 runs 0 → 1 over the layers, r1 1 → ~0. With L = 1 the reference's l/(L−1) is 0/0: use 0.
  const double r0 = L > 1 ? static_cast<double>(l) / static_cast<double>(L - 1) : 0.0;
  const double r1 = 1.0 - static_cast<double>(l) / static_cast<double>(L);
  const auto ramp = [D](int64_t c, double p) { return std::pow(static_cast<double>(c) / D, p); };

  if (local == "ln1.weight" || local == "ln2.weight" || (l == 0 && local == "ln0.weight"))
    return layer_norm_rule("weight");
  if (local == "ln1.bias" || local == "ln2.bias" || (l == 0 && local == "ln0.bias"))
    return layer_norm_rule("bias");
  if (local == "att.time_decay") {
    const double p = 0.7 + 1.3 * r0;
    // c/(A−1) is 0/0 for A = 1: take the ratio as 0 (time_decay −5), as for L = 1 above.
    const double denom = A > 1 ? static_cast<double>(A - 1) : 1.0;
    return {Rule::Kind::PerChannel, fmt::format("-5 + 8*(c/{})^{:.6g}", A > 1 ? A - 1 : 1, p), 0,
            [p, denom](int64_t c) { return -5.0 + 8.0 * std::pow(c / denom, p); }};
  }
  if (local == "att.time_first") {
    return {Rule::Kind::PerChannel, "ln(0.3) + 0.5*(((c+1) mod 3) - 1)", 0,
            [](int64_t c) { return std::log(0.3) + 0.5 * static_cast<double>((c + 1) % 3 - 1); }};
  }
  if (local == "att.time_mix_k" || local == "ffn.time_mix_k" || local == "ffn.time_mix_r") {
    return {Rule::Kind::PerChannel, fmt::format("(c/{})^{:.6g}", D, r1), 0,
            [ramp, r1](int64_t c) { return ramp(c, r1); }};
  }
  if (local == "att.time_mix_v") {
    return {Rule::Kind::PerChannel, fmt::format("(c/{})^{:.6g} + {:.6g}", D, r1, 0.3 * r0), 0,
            [ramp, r1, r0](int64_t c) { return ramp(c, r1) + 0.3 * r0; }};
  }
  if (local == "att.time_mix_r") {  // the paper: 0.5·(c/D)^r1; the code halves the exponent
    return {Rule::Kind::PerChannel, fmt::format("(c/{})^{:.6g}", D, 0.5 * r1), 0,
            [ramp, r1](int64_t c) { return ramp(c, 0.5 * r1); }};
  }
  if (local == "att.key.weight" || local == "att.receptance.weight" ||
      local == "att.output.weight" || local == "ffn.value.weight" ||
      local == "ffn.receptance.weight")
    return zeros();
  if (local == "att.value.weight") return orthogonal_rule(A, D, 1.0);
  if (local == "ffn.key.weight") return orthogonal_rule(F, D, 1.0);
  throw std::invalid_argument("no parameter named 'blocks." + std::to_string(l) + "." + local + "'");
}

Rule rule_for(const std::string& name, const ModelConfig& config, const InitOptions& options) {
  const std::string prefix = "blocks.";
  if (name.rfind(prefix, 0) == 0) {
    const size_t dot = name.find('.', prefix.size());
    const std::string digits = name.substr(prefix.size(), dot - prefix.size());
    if (dot != std::string::npos && !digits.empty() &&
        digits.find_first_not_of("0123456789") == std::string::npos && digits.size() < 10) {
      const int64_t l = std::stoll(digits);
      if (l < config.n_layer) return block_rule(name.substr(dot + 1), l, config);
    }
  } else if (name == "emb.weight") {
    return {Rule::Kind::Uniform, fmt::format("uniform(-{0:g}, {0:g})", options.emb_scale),
            options.emb_scale, nullptr};
  } else if (name == "ln_out.weight" || name == "ln_out.bias") {
    return layer_norm_rule(name.substr(name.find('.') + 1));
  } else if (name == "head.weight") {
    return orthogonal_rule(config.vocab_size, config.n_embd, 0.5);
  }
  throw std::invalid_argument("no parameter named '" + name + "'");
}

// A (rows, cols) matrix with orthonormal rows or columns (whichever are fewer) times `gain`:
// the Q factor of a Gaussian matrix's QR with the signs of R's diagonal folded in, which makes
// it uniformly (Haar) distributed. The Gaussian comes from `gen` on the CPU; the QR runs on
// `device` (a GPU makes the 14B head's 50277×5120 QR quick).
torch::Tensor orthogonal(int64_t rows, int64_t cols, double gain, at::Generator& gen,
                         const torch::Device& device) {
  torch::Tensor a = torch::randn({rows, cols}, gen, torch::kFloat).to(device);
  const bool wide = rows < cols;
  if (wide) a = a.t();
  auto [q, r] = torch::linalg_qr(a);
  q = q * torch::sign(torch::diagonal(r)).unsqueeze(0);
  if (wide) q = q.t();
  return q * gain;
}

}  // namespace

std::string init_rule(const std::string& name, const ModelConfig& config, const InitOptions& options) {
  return rule_for(name, config, options).text;
}

void init_weights(RWKV& model, const InitOptions& options) {
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  for (auto& item : model->named_parameters()) {
    torch::Tensor p = item.value();
    TORCH_CHECK(!p.is_meta(), "cannot initialise ", item.key(), ": it is on the meta device");
    const Rule rule = rule_for(item.key(), model->config(), options);
    switch (rule.kind) {
      case Rule::Kind::Ones:
        p.fill_(1.0);
        break;
      case Rule::Kind::Zeros:
        p.zero_();
        break;
      case Rule::Kind::Uniform:
        p.copy_(torch::empty(p.sizes(), torch::kFloat).uniform_(-rule.scale, rule.scale, gen));
        break;
      case Rule::Kind::Orthogonal:
        p.copy_(orthogonal(p.size(0), p.size(1), rule.scale, gen, p.device()));
        break;
      case Rule::Kind::PerChannel: {
        std::vector<double> values(static_cast<size_t>(p.numel()));
        for (size_t c = 0; c < values.size(); ++c) values[c] = rule.channel(static_cast<int64_t>(c));
        p.copy_(torch::tensor(values, torch::kDouble).reshape(p.sizes()));
        break;
      }
    }
  }
}

}  // namespace rwkv
