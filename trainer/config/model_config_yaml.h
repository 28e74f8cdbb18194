#pragma once
// The `model:` section of a config file, read into rwkv::ModelConfig (rwkv/model_config.h stays
// plain data, so the model library needs no YAML). Errors name file:line and the field.
#include <string>

#include "rwkv/model_config.h"
#include "trainer/config/field_table.h"

namespace rwkv {

// Reads and validates the `model:` mapping (unknown keys, types, positivity); `file` labels errors.
ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& file);

// Reads only the `model:` section of a YAML config file (`rwkv info`, `rwkv plan`: commands that
// need the shape, not a whole run); errors name the file and line.
ModelConfig model_config_from_file(const std::string& path);

}  // namespace rwkv

namespace rwkv::trainer {

// The section's fields (the run config writes and resume-checks the model with them too).
const Fields<ModelConfig>& model_fields();

}  // namespace rwkv::trainer
