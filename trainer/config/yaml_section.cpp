#include "trainer/config/yaml_section.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace rwkv {
namespace {

// Throws for the first mapping, anywhere under `node`, that gives a key twice.
void reject_duplicate_keys(const YAML::Node& node, const std::string& file, const std::string& path) {
  if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) reject_duplicate_keys(node[i], file, fmt::format("{}[{}]", path, i));
    return;
  }
  if (!node.IsMap()) return;
  std::map<std::string, int> first_line;
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    const std::string at = path.empty() ? key : path + "." + key;
    const int line = kv.first.Mark().line + 1;
    const auto [first, fresh] = first_line.emplace(key, line);
    if (kv.first.IsScalar() && !fresh)
      throw ConfigError(fmt::format("{}:{}: {}: duplicate key (first given on line {}); give each key once",
                                    file, line, at, first->second));
    reject_duplicate_keys(kv.second, file, at);
  }
}

}  // namespace

YAML::Node load_yaml(const std::string& text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: invalid YAML: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  reject_duplicate_keys(root, file, "");
  return root;
}

std::string read_config_text(const std::string& path) {
  std::ifstream in(path);
  if (!in || std::filesystem::is_directory(path)) throw ConfigError(path + ": cannot open the config file");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

YAML::Node load_yaml_file(const std::string& path) { return load_yaml(read_config_text(path), path); }

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
