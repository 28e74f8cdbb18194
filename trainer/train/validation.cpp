#include "trainer/train/validation.h"

#include <fmt/format.h>

#include <stdexcept>

#include "data/text_tokens.h"
#include "data/token_range.h"
#include "trainer/config/yaml_section.h"
#include "trainer/dist/communicator.h"

namespace rwkv::trainer {

std::shared_ptr<const data::TokenDataset> open_validation_data(const RunConfig& c,
                                                               std::shared_ptr<const data::TokenDataset> training,
                                                               const data::Tokenizer& tokenizer) {
  const ValidationConfig& v = c.validation;
  std::shared_ptr<const data::TokenDataset> held;
  std::string field;
  if (!v.path.empty()) {
    held = data::open_tokens_or_text(v.path, tokenizer);
    field = "validation.path";
  } else {
    const int64_t n = training->size();
    field = "validation.split_tokens";
    if (v.split_tokens >= n)
      throw ConfigError(fmt::format("{}: {}: {} is not less than the {} tokens of data.path ({})", c.file, field,
                                    v.split_tokens, n, training->describe()));
    for (size_t i = 0; i < c.stages.size(); ++i)
      if (n - v.split_tokens < c.stages[i].ctx_len + 1)
        throw ConfigError(fmt::format(
            "{}: {}: holding out {} of the {} tokens of data.path leaves {}, fewer than one training window of "
            "{}ctx_len + 1 = {} tokens",
            c.file, field, v.split_tokens, n, n - v.split_tokens,
            c.explicit_stages ? fmt::format("stage {}'s ", i) : "", c.stages[i].ctx_len + 1));
    held = std::make_shared<data::TokenRange>(training, n - v.split_tokens, n);
  }
  if (v.max_tokens > 0 && v.max_tokens < held->size()) held = std::make_shared<data::TokenRange>(held, 0, v.max_tokens);
  if (held->size() < 2)
    throw ConfigError(fmt::format("{}: {}: the held-out data {} holds {} token(s); validation needs at least 2", c.file,
                                  field, held->describe(), held->size()));
  data::check_token_ids(*held, c.model.vocab_size, c.file + ": model.vocab_size");
  return held;
}

TokenShare validation_share(int64_t n_tokens, int64_t ctx_len, int64_t batch, int rank, int world_size) {
  if (n_tokens < 2 || ctx_len < 1 || batch < 1 || rank < 0 || rank >= world_size)
    throw std::invalid_argument(fmt::format("validation_share({}, {}, {}, {}, {})", n_tokens, ctx_len, batch, rank,
                                            world_size));
  const int64_t windows = (n_tokens - 1 + ctx_len - 1) / ctx_len;  // the last one may be short
  const int64_t batches = (windows + batch - 1) / batch;
  const int64_t first = batches * rank / world_size, last = batches * (rank + 1) / world_size;
  if (first == last) return {};
  return {first * batch * ctx_len, std::min(last * batch * ctx_len + 1, n_tokens)};
}

Validation::Validation(std::shared_ptr<const data::TokenDataset> held_out, std::vector<int64_t> token_bytes,
                       int64_t batch)
    : held_out_(std::move(held_out)), token_bytes_(std::move(token_bytes)), batch_(batch) {}

EvalResult Validation::run(RWKV& model, int64_t ctx_len, Communicator& comm) const {
  const TokenShare share = validation_share(held_out_->size(), ctx_len, batch_, comm.rank(), comm.world_size());
  EvalResult mine;
  if (share.end > share.begin) {
    const bool training = model->is_training();
    const data::TokenRange tokens(held_out_, share.begin, share.end);
    mine = evaluate(model, tokens, token_bytes_, {.ctx_len = ctx_len, .batch = batch_});
    model->train(training);
  }
  if (!comm.grouped()) return mine;
  // Counts below 2^53 are exact in double; NCCL needs the tensor on the model's (the run's) GPU.
  auto sums = torch::tensor({static_cast<double>(mine.positions), mine.nll, static_cast<double>(mine.bytes)},
                            torch::kFloat64)
                  .to(model->emb->weight.device());
  comm.all_reduce_sum(sums);
  sums = sums.cpu();
  const auto s = sums.accessor<double, 1>();
  return {.positions = static_cast<int64_t>(s[0]), .nll = s[1], .bytes = static_cast<int64_t>(s[2])};
}

std::string validation_table(const std::vector<StageValidation>& rows) {
  std::string out =
      "stage\tctx_len\tstep\tloss\tperplexity\tbits_per_byte\tfinal_loss\tfinal_perplexity\tfinal_bits_per_byte\n";
  for (const auto& r : rows) {
    const std::string at_stage =
        r.last ? fmt::format("{}\t{:.6f}\t{:.4f}\t{:.6f}", r.last->step, r.last->loss, r.last->perplexity,
                             r.last->bits_per_byte)
               : std::string("-\t-\t-\t-");
    out += fmt::format("{}\t{}\t{}\t{:.6f}\t{:.4f}\t{:.6f}\n", r.stage, r.ctx_len, at_stage, r.final_model.loss(),
                       r.final_model.perplexity(), r.final_model.bits_per_byte());
  }
  return out;
}

}  // namespace rwkv::trainer
