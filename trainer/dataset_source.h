#pragma once
// BatchSource over a token file (data/token_dataset.h) in the order of the configured sampler
// (magic prime, RECIPE §7, or seeded random). One process: global sample index g = the stage's
// sample number (data/sampler.h's layout with world size 1).
#include <memory>

#include "data/token_dataset.h"
#include "trainer/batch_source.h"
#include "trainer/run_config.h"

namespace rwkv::trainer {

std::unique_ptr<BatchSource> make_dataset_source(std::shared_ptr<const data::TokenDataset> dataset,
                                                 const RunConfig& config, const Stage& stage);

}  // namespace rwkv::trainer
