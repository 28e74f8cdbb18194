#pragma once
// Strict reading of one YAML mapping into typed fields, shared by every config section
// (model, data, train, ...). Errors name the file, the line and the expected form; keys that no
// reader asked for are rejected by finish(), so a typo never silently falls back to a default.
// The config's field tables (trainer/config/field_table.h) are written on top of it.
//
//   YamlSection s(node, "configs/x.yaml", "model");
//   cfg.n_layer = s.required<int64_t>("n_layer", "a positive integer", [](auto v) { return v > 0; });
//   cfg.dim_att = s.optional<int64_t>("dim_att", 0, "a positive integer");
//   s.finish();
#include <yaml-cpp/yaml.h>

#include <functional>
#include <set>
#include <stdexcept>
#include <string>

namespace rwkv {

// The error type of every config problem; what() is the full user-facing message.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses YAML text; `file` labels messages. Throws ConfigError for a syntax error (file:line:col)
// and for a key given twice in one mapping (yaml-cpp would keep the first silently), naming both
// lines and the key's path ("train.micro_batch", "stages[1].ctx_len").
YAML::Node load_yaml(const std::string& text, const std::string& file);
// The text of a config file; one that cannot be read is a ConfigError naming it.
std::string read_config_text(const std::string& path);
// load_yaml of a config file.
YAML::Node load_yaml_file(const std::string& path);

class YamlSection {
 public:
  // `node` must be a mapping (or null/absent: an empty section). `file` and `path` ("model",
  // "stages[1]") only label messages.
  YamlSection(YAML::Node node, std::string file, std::string path);

  template <typename T>
  T required(const std::string& key, const std::string& expected,
             const std::function<bool(const T&)>& valid = nullptr);
  template <typename T>
  T optional(const std::string& key, const T& fallback, const std::string& expected,
             const std::function<bool(const T&)>& valid = nullptr);

  bool has(const std::string& key) const;
  // The raw child node (marks the key as read), for nested sections and lists.
  YAML::Node child(const std::string& key);
  // Throws ConfigError naming the first key that no reader asked for.
  void finish() const;

  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  std::string where(const std::string& key) const;  // "file:line: path.key"
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  template <typename T>
  T convert(const std::string& key, const std::string& expected,
            const std::function<bool(const T&)>& valid);

  YAML::Node node_;
  std::string file_, path_;
  std::set<std::string> read_;
};

// ---- implementation of the templates ------------------------------------------------------

template <typename T>
T YamlSection::convert(const std::string& key, const std::string& expected,
                       const std::function<bool(const T&)>& valid) {
  read_.insert(key);
  const YAML::Node v = node_[key];
  T out{};
  try {
    if (!v.IsScalar() && !v.IsSequence()) throw YAML::Exception(v.Mark(), "not a value");
    out = v.as<T>();
  } catch (const YAML::Exception&) {
    fail(key, "expected " + expected + ", got '" + (v.IsScalar() ? v.Scalar() : YAML::Dump(v)) + "'");
  }
  if (valid && !valid(out)) {
    fail(key, "expected " + expected + ", got '" + (v.IsScalar() ? v.Scalar() : YAML::Dump(v)) + "'");
  }
  return out;
}

template <typename T>
T YamlSection::required(const std::string& key, const std::string& expected,
                        const std::function<bool(const T&)>& valid) {
  if (!has(key)) fail(key, "missing; expected " + expected);
  return convert<T>(key, expected, valid);
}

template <typename T>
T YamlSection::optional(const std::string& key, const T& fallback, const std::string& expected,
                        const std::function<bool(const T&)>& valid) {
  if (!has(key)) {
    read_.insert(key);
    return fallback;
  }
  return convert<T>(key, expected, valid);
}

}  // namespace rwkv
