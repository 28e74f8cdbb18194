#pragma once
// `rwkv prep`: raw text → token files. Inputs are .jsonl / .jsonl.zst files (one JSON object
// per line with a text field, the Pile's format), .txt files (each file one document) or
// directories of them (searched recursively, in sorted order). Each document's tokens are
// followed by the tokenizer's EOD id (0). Tokenization runs on worker threads over batches of
// lines; a bounded number of batches is in flight and output is written in input order, so
// memory does not grow with the input and the output is identical for any thread count.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/token_writer.h"
#include "data/tokenizer.h"

namespace rwkv::data {

struct PrepOptions {
  std::vector<std::filesystem::path> inputs;
  std::filesystem::path output;  // binidx prefix, or an .h5/.hdf5 file
  TokenFormat format = TokenFormat::binidx;
  int threads = 0;                  // 0: hardware concurrency
  std::string text_field = "text";  // the JSON field holding a document's text
  bool abort_on_bad_line = false;   // else bad lines are reported and skipped
  int max_bad_line_reports = 20;    // report this many bad lines in full, then count only
};

struct PrepStats {
  int64_t documents = 0, tokens = 0, bad_lines = 0, empty_documents = 0;
  uint64_t input_bytes = 0, total_input_bytes = 0;
  double seconds = 0;
};

// Called about twice a second while running, and once at the end.
using PrepProgress = std::function<void(const PrepStats&)>;
// Called for each reported bad line: "file:line: reason".
using PrepWarning = std::function<void(const std::string&)>;

// The input files an input list expands to (directories recursively, sorted); throws on a
// missing path or an unsupported file type given explicitly.
std::vector<std::filesystem::path> expand_prep_inputs(const std::vector<std::filesystem::path>& inputs);

// Runs the whole preparation; the output appears only when complete. Throws std::runtime_error
// with file:line on a bad line when abort_on_bad_line, and on any I/O error.
PrepStats prepare_tokens(const PrepOptions& options, const Tokenizer& tokenizer, const PrepProgress& progress = {},
                         const PrepWarning& warn = {});

// The closing summary: documents, tokens, bad lines, and the magic prime for ctx_len 512 … 8192.
std::string format_summary(const PrepStats& s, const std::filesystem::path& output);

}  // namespace rwkv::data
