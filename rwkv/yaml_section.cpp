#include "rwkv/yaml_section.h"

namespace rwkv {

YamlSection::YamlSection(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) {
    throw ConfigError(file_ + ":" + std::to_string(node_.Mark().line + 1) + ": '" + path_ +
                      "' must be a mapping of key: value");
  }
}

bool YamlSection::has(const std::string& key) const {
  return node_ && node_.IsMap() && node_[key] && !node_[key].IsNull();
}

YAML::Node YamlSection::child(const std::string& key) {
  read_.insert(key);
  return has(key) ? node_[key] : YAML::Node();
}

std::string YamlSection::where(const std::string& key) const {
  int line = node_ && !node_.IsNull() ? node_.Mark().line + 1 : 0;
  if (node_ && node_.IsMap()) {
    for (const auto& kv : node_) {
      if (kv.first.Scalar() == key) line = kv.first.Mark().line + 1;
    }
  }
  const std::string field = path_.empty() ? key : path_ + "." + key;
  return line > 0 ? file_ + ":" + std::to_string(line) + ": " + field : file_ + ": " + field;
}

void YamlSection::fail(const std::string& key, const std::string& message) const {
  throw ConfigError(where(key) + ": " + message);
}

void YamlSection::finish() const {
  if (!node_ || !node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string key = kv.first.Scalar();
    if (!read_.count(key)) {
      std::string known;
      for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
      fail(key, "unknown key (known keys here: " + known + ")");
    }
  }
}

}  // namespace rwkv
