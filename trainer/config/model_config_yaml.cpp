#include "trainer/config/model_config_yaml.h"

namespace rwkv {
namespace trainer {

const Fields<ModelConfig>& model_fields() {
  const auto positive = [](const int64_t& v) { return v > 0; };
  const auto non_negative = [](const int64_t& v) { return v >= 0; };
  // Every field shapes the weights: none may change on resume.
  constexpr auto unsafe = OnResume::unsafe;
  using M = ModelConfig;
  static const Fields<M> fields{
      value("n_layer", &M::n_layer, "a positive integer (number of blocks L)", positive, unsafe, Need::required),
      value("n_embd", &M::n_embd, "a positive integer (model width D)", positive, unsafe, Need::required),
      value("vocab_size", &M::vocab_size, "a positive integer (V)", positive, unsafe, Need::required),
      value("dim_att", &M::dim_att, "a positive integer, or 0 for n_embd", non_negative, unsafe),
      value("dim_ffn", &M::dim_ffn, "a positive integer, or 0 for 4*n_embd", non_negative, unsafe),
  };
  return fields;
}

}  // namespace trainer

ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& file) {
  YamlSection s(node, file, "model");
  ModelConfig c;
  trainer::read_fields(trainer::model_fields(), s, c);
  s.finish();
  return c;
}

ModelConfig model_config_from_file(const std::string& path) {
  const YAML::Node root = load_yaml_file(path);
  if (!root.IsMap()) throw ConfigError(path + ": expected a mapping with a 'model:' section");
  if (!root["model"]) throw ConfigError(path + ": no 'model:' section");
  return model_config_from_yaml(root["model"], path);
}

}  // namespace rwkv
