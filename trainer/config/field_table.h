#pragma once
// A config section declared once, as a table of fields (the tables are in run_config.cpp and
// model_config_yaml.cpp). Each field says
//   - how it is read: key, type, validity, the form named in messages, whether it is required.
//     An absent optional key keeps the struct's value, so a default is the struct's own
//     initialiser, and a stage inherits from a section by starting from the section's values;
//   - how it is written back into the effective YAML (RunConfig::to_yaml, in table order);
//   - whether a resumed run may change it (unsafe_resume_change in run_config.h).
// Readers run in table order, so a field may default to one read before it (lr_final to lr_init).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "trainer/config/yaml_section.h"

namespace rwkv::trainer {

// Whether a resumed run continues exactly when the field differs from its checkpoint's config.
enum class OnResume { unsafe, safe };

enum class Need {
  optional,        // absent: the struct keeps its value
  required,
  without_stages,  // required unless the run lists `stages:`; there 0 means unset and is not written
  alternative,     // one of a group that the caller checks (a stage's length); 0 (absent) is not written
};

template <typename S>
struct Field {
  std::string key;
  OnResume on_resume;
  std::function<void(YamlSection&, S&, bool has_stages)> read;
  std::function<void(YAML::Emitter&, const S&)> write;  // key and value, or nothing when unset
};
template <typename S>
using Fields = std::vector<Field<S>>;

template <typename T>
using Valid = std::function<bool(const T&)>;

// Values in the effective YAML: text quoted, reals in the shortest form that reads back the same.
inline void put(YAML::Emitter& e, const std::string& v) { e << YAML::DoubleQuoted << v; }
inline void put(YAML::Emitter& e, double v) { e << fmt::format("{}", v); }
inline void put(YAML::Emitter& e, int64_t v) { e << v; }
inline void put(YAML::Emitter& e, uint64_t v) { e << v; }
inline void put(YAML::Emitter& e, bool v) { e << v; }

// A plain value: `key: value` of type T into `member`.
template <typename S, typename T>
Field<S> value(const std::string& key, T S::*member, const std::string& expected,
               std::type_identity_t<Valid<T>> valid, OnResume on_resume, Need need = Need::optional) {
  const auto read = [=](YamlSection& s, S& obj, bool has_stages) {
    if (need == Need::required || (need == Need::without_stages && !has_stages)) {
      obj.*member = s.required<T>(key, expected, valid);
    } else if (need == Need::without_stages) {
      obj.*member = s.optional<T>(key, obj.*member, expected,
                                  [valid](const T& v) { return v == T{} || !valid || valid(v); });
    } else {
      obj.*member = s.optional<T>(key, obj.*member, expected, valid);
    }
  };
  const auto write = [=](YAML::Emitter& e, const S& obj) {
    if ((need == Need::without_stages || need == Need::alternative) && obj.*member == T{}) return;
    e << YAML::Key << key << YAML::Value;
    put(e, obj.*member);
  };
  return Field<S>{key, on_resume, read, write};
}

// The names of an enum's values: one specialisation per enum, {value, name} pairs in `v`.
template <typename E>
struct EnumNames;

template <typename E>
std::string enum_name(E e) {
  for (const auto& [value, name] : EnumNames<E>::v)
    if (value == e) return name;
  return "?";
}

// One of an enum's names: "expected one of a|b|c, got 'x'" otherwise.
template <typename S, typename E>
Field<S> choice(const std::string& key, E S::*member, OnResume on_resume) {
  std::string choices = "one of ";  // "one of a|b|c"
  for (const auto& entry : EnumNames<E>::v) choices.append(&entry == EnumNames<E>::v ? "" : "|").append(entry.second);
  const auto read = [=](YamlSection& s, S& obj, bool) {
    const auto text = s.optional<std::string>(key, enum_name(obj.*member), choices);
    for (const auto& [value, name] : EnumNames<E>::v)
      if (text == name) {
        obj.*member = value;
        return;
      }
    s.fail(key, fmt::format("expected {}, got '{}'", choices, text));
  };
  const auto write = [=](YAML::Emitter& e, const S& obj) {
    e << YAML::Key << key << YAML::Value << enum_name(obj.*member);
  };
  return Field<S>{key, on_resume, read, write};
}

template <typename S>
void read_fields(const Fields<S>& fields, YamlSection& s, S& obj, bool has_stages = false) {
  for (const auto& f : fields) f.read(s, obj, has_stages);
}

// The section as one YAML mapping.
template <typename S>
void write_fields(YAML::Emitter& e, const Fields<S>& fields, const S& obj) {
  e << YAML::BeginMap;
  for (const auto& f : fields) f.write(e, obj);
  e << YAML::EndMap;
}

// "section.key" → OnResume for every field of the table.
template <typename S>
void add_resume_rules(const std::string& section, const Fields<S>& fields, std::map<std::string, OnResume>& rules) {
  for (const auto& f : fields) rules[section + "." + f.key] = f.on_resume;
}

}  // namespace rwkv::trainer
