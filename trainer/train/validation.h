#pragma once
// Held-out validation during a run (the config's `validation:` section, trainer/config/run_config.h):
// loss, perplexity and bits per byte of the model over a fixed set of windows of the held-out
// tokens at the stage's ctx_len, computed by `rwkv eval`'s own evaluation
// (trainer/inference/evaluate.h), so a run's figure is what `rwkv eval` of its checkpoint gives on
// the same tokens with the same --ctx-len and --batch.
//
// The windows are evaluate()'s: the held-out tokens (at most validation.max_tokens) cut into
// consecutive windows of ctx_len inputs, each from a fresh state, the last one possibly shorter.
// On several ranks they are dealt out in whole forward batches of validation.batch windows, a
// contiguous run of batches per rank; each rank evaluates its share and the sums (nats, positions,
// bytes) are added over the ranks. Every forward pass is then the one a single rank runs, so the
// figure equals one rank's up to the order of the final additions.
//
// At the end of a run with stages, validation_table() gives the loss per context length (the
// paper's Fig. 6 for this run, trainer/README.md "Context extension").
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "rwkv/model.h"
#include "trainer/config/run_config.h"
#include "trainer/inference/evaluate.h"
#include "trainer/train/metrics.h"

namespace rwkv { class Communicator; }

namespace rwkv::trainer {

// The held-out tokens of `config`: validation.path, opened as `rwkv eval --data` opens it (.txt
// through `tokenizer`), or the last validation.split_tokens tokens of `training`; then only the
// first validation.max_tokens of them. Throws ConfigError naming the field when the split leaves
// no training window at some stage's ctx_len or fewer than 2 tokens remain, and
// std::runtime_error naming the file when it cannot be read or holds ids outside the model's
// vocabulary.
std::shared_ptr<const data::TokenDataset> open_validation_data(const RunConfig& config,
                                                               std::shared_ptr<const data::TokenDataset> training,
                                                               const data::Tokenizer& tokenizer);

// Rank `rank`'s share of the windows of `n_tokens` held-out tokens at `ctx_len`, in whole batches
// of `batch` windows: the token range [begin, end) holding its windows' inputs and targets
// (consecutive shares overlap by the one token that is the last target of one and the first input
// of the next); empty when there are fewer batches than ranks.
struct TokenShare {
  int64_t begin = 0, end = 0;
};
TokenShare validation_share(int64_t n_tokens, int64_t ctx_len, int64_t batch, int rank, int world_size);

class Validation {
 public:
  // `token_bytes`: trainer/inference/evaluate.h token_byte_lengths of the run's tokenizer.
  Validation(std::shared_ptr<const data::TokenDataset> held_out, std::vector<int64_t> token_bytes, int64_t batch);
  // This rank's share evaluated with `model`, summed over the ranks of `comm` (called on every
  // rank at once): the same figures on every rank. The model's train/eval mode is kept.
  EvalResult run(RWKV& model, int64_t ctx_len, Communicator& comm) const;
  const data::TokenDataset& data() const { return *held_out_; }

 private:
  std::shared_ptr<const data::TokenDataset> held_out_;
  std::vector<int64_t> token_bytes_;
  int64_t batch_;
};

// One row of the table per stage that ran: the stage's last validation (at its end, or at the
// run's last step inside it; none when it ran without validation) and the final model's figures
// at its ctx_len.
struct StageValidation {
  int64_t stage = 0, ctx_len = 0;
  std::optional<ValidationRow> last;
  EvalResult final_model;
};
// Tab-separated, one header line: stage, ctx_len, step, loss, perplexity, bits_per_byte (of the
// stage's last validation; "-" without one), final_loss, final_perplexity, final_bits_per_byte.
std::string validation_table(const std::vector<StageValidation>& rows);

}  // namespace rwkv::trainer
