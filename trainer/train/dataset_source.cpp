#include "trainer/train/dataset_source.h"

#include <fmt/format.h>

#include <numeric>
#include <stdexcept>
#include <vector>

#include "data/batch.h"
#include "data/magic_prime_sampler.h"
#include "data/random_sampler.h"

namespace rwkv::trainer {
namespace {

class DatasetSource : public BatchSource {
 public:
  DatasetSource(std::shared_ptr<const data::TokenDataset> dataset, std::unique_ptr<data::Sampler> sampler,
                int64_t vocab_size)
      : dataset_(std::move(dataset)), sampler_(std::move(sampler)), vocab_size_(vocab_size) {}
  torch::Tensor samples(int64_t first, int64_t count) override {
    std::vector<int64_t> indices(static_cast<size_t>(count));
    std::iota(indices.begin(), indices.end(), first);
    return samples_at(indices);
  }
  torch::Tensor samples_at(const std::vector<int64_t>& indices) override {
    dataset_->check_unchanged();
    return checked(data::make_batch(*dataset_, *sampler_, indices).tokens);
  }

 private:
  // The scan at open (data::check_token_ids) samples a large file; every batch is checked whole,
  // so a bad id is an error naming the data instead of an index error inside the embedding.
  torch::Tensor checked(torch::Tensor tokens) const {
    const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
    if (lo < 0 || hi >= vocab_size_)
      throw std::runtime_error(fmt::format("{}: token id {} in a batch; model.vocab_size is {}, so ids must lie in "
                                           "[0, {})",
                                           dataset_->describe(), lo < 0 ? lo : hi, vocab_size_, vocab_size_));
    return tokens;
  }

  std::shared_ptr<const data::TokenDataset> dataset_;
  std::unique_ptr<data::Sampler> sampler_;
  int64_t vocab_size_;
};

}  // namespace

std::unique_ptr<BatchSource> make_dataset_source(std::shared_ptr<const data::TokenDataset> dataset,
                                                 const RunConfig& config, const Stage& stage) {
  std::unique_ptr<data::Sampler> sampler;
  const int64_t held_out = config.validation.split_tokens;
  if (config.data.sampler == SamplerKind::magic_prime)
    sampler = std::make_unique<data::MagicPrimeSampler>(dataset->size(), stage.ctx_len, held_out);
  else
    sampler = std::make_unique<data::RandomSampler>(dataset->size(), stage.ctx_len, config.train.seed, held_out);
  return std::make_unique<DatasetSource>(std::move(dataset), std::move(sampler), config.model.vocab_size);
}

}  // namespace rwkv::trainer
