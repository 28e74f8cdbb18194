#pragma once
// Learning-rate multipliers by parameter name (trainer/README.md "Optimizer and schedule":
// time_decay 2×, time_first 3×; the context-extension stage 5× for every time_* parameter).
#include <map>
#include <string>

namespace rwkv::trainer {

// Key → multiplier. A key matches a parameter by the last component of its name ("time_decay"
// matches "blocks.3.att.time_decay"); a key ending in '*' matches a prefix of that component
// ("time_*" matches every time_ parameter). Several matching keys multiply.
using LrMult = std::map<std::string, double>;

// Whether `key` matches the parameter `name` under the rule above.
bool lr_mult_key_matches(const std::string& key, const std::string& name);

// The multiplier of parameter `name` under `mult` (1 when no key matches).
double lr_multiplier(const std::string& name, const LrMult& mult);

}  // namespace rwkv::trainer
