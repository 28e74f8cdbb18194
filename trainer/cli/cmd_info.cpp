// `rwkv info CONFIG`: the architecture of a config's model, every tensor with its shape and
// initialisation rule, the parameter count, forward FLOPs per token and weight memory.
// The model is built on the meta device, so the table and the counts come from the real module
// definition without allocating anything (the 14B config included).
#include <fmt/format.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>

#include "rwkv/init.h"
#include "rwkv/model.h"
#include "rwkv/model_config.h"
#include "trainer/cli/commands.h"
#include "trainer/config/model_config_yaml.h"

namespace rwkv::cli {
namespace {

std::string shape_text(torch::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

double gib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

void print_info(const std::string& path) {
  const ModelConfig config = model_config_from_file(path);
  const RWKV model(config, torch::TensorOptions().device(torch::kMeta));
  const InitOptions init;  // the table shows the emb scale's default; training passes lr_init

  fmt::print("config: {}\n", path);
  fmt::print("architecture: RWKV-4 (rwkv/README.md 'Forward pass')\n");
  fmt::print("  n_layer L = {}, n_embd D = {}, dim_att A = {}, dim_ffn F = {}, vocab_size V = {}\n",
             config.n_layer, config.n_embd, config.att(), config.ffn(), config.vocab_size);
  fmt::print("  emb -> ln0 -> {} x [x += TimeMix(ln1(x)) (WKV); x += ChannelMix(ln2(x)) (relu^2)]"
             " -> ln_out -> head (untied, no biases)\n",
             config.n_layer);

  const auto params = model->named_parameters();
  size_t name_width = 4;
  for (const auto& p : params) name_width = std::max(name_width, p.key().size());
  fmt::print("tensors (init as the reference code, rwkv/README.md 'Initialisation'; emb scale = optimizer lr_init, "
             "default {:g}):\n", init.emb_scale);
  fmt::print("  {:<{}}  {:<14}  {:>12}  {}\n", "name", name_width, "shape", "elements", "init");
  for (const auto& p : params) {
    fmt::print("  {:<{}}  {:<14}  {:>12}  {}\n", p.key(), name_width,
               shape_text(p.value().sizes()), p.value().numel(), init_rule(p.key(), config, init));
  }

  const int64_t n = parameter_count(*model);
  const int64_t flops = forward_flops_per_token(*model);
  fmt::print("parameters: {}\n", n);
  fmt::print("forward FLOPs per token: {} ({:.4g}; 2 x matmul weights = 2(13LD^2 + VD) for "
             "A = D, F = 4D)\n", flops, static_cast<double>(flops));
  fmt::print("training FLOPs per token: {:.4g} (3 x forward)\n", 3.0 * static_cast<double>(flops));
  fmt::print("weights: fp32 {:.2f} GiB, bf16 {:.2f} GiB\n", gib(4 * n), gib(2 * n));
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "info", "Print a config's model: architecture, tensors and their init, parameters, FLOPs, memory");
  auto path = std::make_shared<std::string>();
  cmd->add_option("config", *path, "YAML config file (its model: section is read)")->required();
  cmd->callback([path] { print_info(*path); });
}

}  // namespace rwkv::cli
