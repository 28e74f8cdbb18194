#include "trainer/optim/lr_mult.h"

namespace rwkv::trainer {

bool lr_mult_key_matches(const std::string& key, const std::string& name) {
  const auto dot = name.rfind('.');
  const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
  const bool wildcard = !key.empty() && key.back() == '*';
  return wildcard ? last.rfind(key.substr(0, key.size() - 1), 0) == 0 : last == key;
}

double lr_multiplier(const std::string& name, const LrMult& mult) {
  double m = 1.0;
  for (const auto& [key, value] : mult)
    if (lr_mult_key_matches(key, name)) m *= value;
  return m;
}

}  // namespace rwkv::trainer
