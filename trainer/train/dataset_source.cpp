#include "trainer/train/dataset_source.h"

#include <numeric>
#include <vector>

#include "data/batch.h"
#include "data/magic_prime_sampler.h"
#include "data/random_sampler.h"

namespace rwkv::trainer {
namespace {

class DatasetSource : public BatchSource {
 public:
  DatasetSource(std::shared_ptr<const data::TokenDataset> dataset, std::unique_ptr<data::Sampler> sampler)
      : dataset_(std::move(dataset)), sampler_(std::move(sampler)) {}
  torch::Tensor samples(int64_t first, int64_t count) override {
    std::vector<int64_t> indices(static_cast<size_t>(count));
    std::iota(indices.begin(), indices.end(), first);
    return data::make_batch(*dataset_, *sampler_, indices).tokens;
  }
  torch::Tensor samples_at(const std::vector<int64_t>& indices) override {
    return data::make_batch(*dataset_, *sampler_, indices).tokens;
  }

 private:
  std::shared_ptr<const data::TokenDataset> dataset_;
  std::unique_ptr<data::Sampler> sampler_;
};

}  // namespace

std::unique_ptr<BatchSource> make_dataset_source(std::shared_ptr<const data::TokenDataset> dataset,
                                                 const RunConfig& config, const Stage& stage) {
  std::unique_ptr<data::Sampler> sampler;
  if (config.data.sampler == SamplerKind::magic_prime)
    sampler = std::make_unique<data::MagicPrimeSampler>(dataset->size(), stage.ctx_len);
  else
    sampler = std::make_unique<data::RandomSampler>(dataset->size(), stage.ctx_len, config.train.seed);
  return std::make_unique<DatasetSource>(std::move(dataset), std::move(sampler));
}

}  // namespace rwkv::trainer
