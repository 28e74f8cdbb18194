#pragma once
// Held-out evaluation of a model over a token stream: loss (nats/token), perplexity and bits per
// byte. The stream is cut into consecutive windows of ctx_len inputs, each run from a fresh state
// as in training (data/README.md "Token files and sample order"), so every token but the first is predicted exactly once.
#include <cstdint>
#include <functional>
#include <vector>

#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "rwkv/model.h"

namespace rwkv::trainer {

struct EvalOptions {
  int64_t ctx_len = 1024;  // inputs per window
  int64_t batch = 8;       // windows per forward pass
  // A window longer than this runs in segments carrying the RNN state (the same figures up to
  // rounding; logits of one segment at a time). 0: whole windows.
  int64_t segment_len = 1024;
  int64_t max_tokens = 0;  // only the stream's first max_tokens tokens; 0: all
};

struct EvalResult {
  int64_t positions = 0;  // tokens predicted
  double nll = 0;         // Σ −ln p(token), nats
  int64_t bytes = 0;      // decoded UTF-8 bytes of the predicted tokens
  double loss() const;           // nll / positions
  double perplexity() const;     // e^loss
  double bits_per_byte() const;  // nll / ln 2 / bytes
};

// Bytes each id decodes to on its own (byte-level tokenizers: exact, the bytes concatenate). The
// end-of-document id counts 0 bytes: it separates documents and is no text, while its prediction
// still costs nats (so bits per byte also charges for knowing where documents end).
std::vector<int64_t> token_byte_lengths(const data::Tokenizer& tokenizer, int64_t vocab_size);

// `on_position(pos, token, logprob)`, if given, sees each predicted token in stream order: the
// token at stream position pos and its natural-log probability. Throws naming the position of a
// token outside the model's vocabulary, or when the stream has fewer than 2 tokens.
EvalResult evaluate(RWKV& model, const data::TokenDataset& data, const std::vector<int64_t>& token_bytes,
                    const EvalOptions& options,
                    const std::function<void(int64_t pos, int64_t token, double logprob)>& on_position = {});

}  // namespace rwkv::trainer
