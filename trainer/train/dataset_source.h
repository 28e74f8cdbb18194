#pragma once
// BatchSource over a token file (data/token_dataset.h) in the order of the configured sampler
// (magic prime, data/README.md "Token files and sample order", or seeded random). The stage's sample number is the global sample
// index g of data/sampler.h's layout; each rank reads its own rows of it. With
// validation.split_tokens the sampler never draws a window reaching into the file's last
// split_tokens tokens (data/README.md "Held-out split").
#include <memory>

#include "data/token_dataset.h"
#include "trainer/train/batch_source.h"
#include "trainer/config/run_config.h"

namespace rwkv::trainer {

std::unique_ptr<BatchSource> make_dataset_source(std::shared_ptr<const data::TokenDataset> dataset,
                                                 const RunConfig& config, const Stage& stage);

}  // namespace rwkv::trainer
