#include "rwkv/model_config.h"

#include <fmt/format.h>

#include "rwkv/yaml_section.h"

namespace rwkv {

ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& file) {
  YamlSection s(node, file, "model");
  const auto positive = [](const int64_t& v) { return v > 0; };
  const auto non_negative = [](const int64_t& v) { return v >= 0; };
  ModelConfig c;
  c.n_layer = s.required<int64_t>("n_layer", "a positive integer (number of blocks L)", positive);
  c.n_embd = s.required<int64_t>("n_embd", "a positive integer (model width D)", positive);
  c.vocab_size = s.required<int64_t>("vocab_size", "a positive integer (V)", positive);
  c.dim_att = s.optional<int64_t>("dim_att", 0, "a positive integer, or 0 for n_embd", non_negative);
  c.dim_ffn = s.optional<int64_t>("dim_ffn", 0, "a positive integer, or 0 for 4*n_embd", non_negative);
  s.finish();
  return c;
}

ModelConfig model_config_from_file(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ConfigError(path + ": cannot open the config file");
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: invalid YAML: {}", path, e.mark.line + 1,
                                  e.mark.column + 1, e.msg));
  }
  if (!root.IsMap()) throw ConfigError(path + ": expected a mapping with a 'model:' section");
  if (!root["model"]) throw ConfigError(path + ": no 'model:' section");
  return model_config_from_yaml(root["model"], path);
}

}  // namespace rwkv
