#include "trainer/train/tensorboard_log.h"

#include <vector>

#include <nlohmann/json.hpp>

namespace rwkv::trainer {

TensorBoardLog::TensorBoardLog(const std::filesystem::path& dir, int64_t resume_step,
                               std::function<void(const std::string&)> warn)
    : file_(dir, std::move(warn)) {
  file_.write(io::session_start_event(io::event_wall_time(), resume_step + 1));
}

void TensorBoardLog::append(const MetricsRow& row) { append(nlohmann::json::parse(metrics_json(row))); }

void TensorBoardLog::append(const nlohmann::json& record) {
  std::vector<io::TensorBoardScalar> scalars;
  for (const auto& [key, value] : record.items())
    if (key != "step" && value.is_number()) scalars.push_back({key, value.get<float>()});
  file_.write(io::scalars_event(io::event_wall_time(), record.at("step").get<int64_t>(), scalars));
}

}  // namespace rwkv::trainer
