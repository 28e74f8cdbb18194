// `rwkv import`: a released RWKV-4 checkpoint (bf16 .pth, reference keys, often an OrderedDict) or a
// transformers folder → the project's weights file, checked against a config's model section, as
// the starting point of fine-tuning or context extension (paper §5.2).
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "trainer/cli/commands.h"
#include "trainer/config/model_config_yaml.h"
#include "trainer/io/output_path.h"
#include "trainer/io/weight_files.h"

namespace rwkv::cli {

namespace {

struct ImportArgs {
  std::string source;
  std::string out;
  std::string config;
  std::string dtype = "fp32";
  bool force = false;
};

}  // namespace

void add_import_command(CLI::App& app) {
  auto args = std::make_shared<ImportArgs>();
  auto* cmd = app.add_subcommand("import", "Read released RWKV-4 weights (.pth or HF folder) into a weights file");
  cmd->add_option("source", args->source, "Released .pth (reference keys), .safetensors or an HF folder")->required();
  cmd->add_option("--out", args->out, "Output weights file: .pth or .safetensors")->required();
  cmd->add_option("--config", args->config, "YAML run config whose model: section the weights must match");
  cmd->add_option("--dtype", args->dtype, "fp32 | bf16 | fp16 (training keeps fp32 master weights)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  cmd->add_flag("--force", args->force, io::kForceHelp);
  cmd->callback([args] {
    const std::filesystem::path out(args->out);
    if (out.extension() != ".pth" && out.extension() != ".safetensors")
      throw io::OutputRefused(fmt::format("--out {}: expected a .pth or .safetensors file name", args->out));
    const io::WeightFormat format =
        out.extension() == ".pth" ? io::WeightFormat::Pth : io::WeightFormat::Safetensors;
    std::vector<std::filesystem::path> inputs{args->source};
    if (!args->config.empty()) inputs.emplace_back(args->config);
    io::check_output_path(out, io::output_kind(format), args->force, inputs, "--out");
    const io::ModelWeights weights = io::read_model_weights(args->source);
    if (!args->config.empty()) {
      const YAML::Node root = load_yaml_file(args->config);
      if (!root.IsMap() || !root["model"])
        throw std::runtime_error(fmt::format("{}: no model: section to check the weights against", args->config));
      const ModelConfig expected = model_config_from_yaml(root["model"], args->config);
      io::check_model_weights(weights, expected, fmt::format("{} (against {})", args->source, args->config));
    }
    io::write_model_weights(weights, format, out, io::parse_weight_dtype(args->dtype), 0);
    const ModelConfig& c = weights.config;
    fmt::print("imported {} (n_layer {}, n_embd {}, vocab_size {}, dim_att {}, dim_ffn {}) into {} as {}\n",
               args->source, c.n_layer, c.n_embd, c.vocab_size, c.att(), c.ffn(), args->out, args->dtype);
  });
}

}  // namespace rwkv::cli
