// `rwkv eval MODEL --data FILE`: loss, perplexity and bits per byte of a checkpoint, .pth or HF
// folder over a binidx / HDF5 token file or a .txt file (tokenized here), with an optional JSONL
// dump of every predicted token's log-probability (trainer/inference/evaluate.h).
#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/text_tokens.h"
#include "common/durable_file.h"
#include "common/progress.h"
#include "trainer/io/output_path.h"
#include "trainer/cli/commands.h"
#include "trainer/inference/evaluate.h"
#include "trainer/inference/inference_setup.h"

namespace rwkv::cli {

namespace {

struct EvalArgs {
  std::string source, data, tokenizer, dump, device = "auto";
  bool force = false;
  trainer::EvalOptions options{.ctx_len = 0};
};

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Loss, perplexity and bits per byte of a model over a token or text file");
  cmd->add_option("model", args->source, "checkpoint (step-N, checkpoints/ or run dir), .pth, .safetensors or HF folder")
      ->required();
  cmd->add_option("--data", args->data, "binidx prefix, .h5/.hdf5 token file, or .txt (tokenized with --tokenizer)")
      ->required();
  cmd->add_option("--ctx-len", args->options.ctx_len, "tokens per window (default: the checkpoint's ctx_len, else 1024)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch", args->options.batch, "windows per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--segment-len", args->options.segment_len,
                  "run longer windows in segments of this many tokens, carrying the RNN state (0: whole windows)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-tokens", args->options.max_tokens, "evaluate only the first N tokens (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--tokenizer", args->tokenizer, "byte or a tokenizer.json (default: the checkpoint's, else byte)");
  cmd->add_option("--dump-logprobs", args->dump, "JSONL, one line per predicted token: pos, token, logprob");
  cmd->add_option("--device", args->device, "auto | cpu | cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  cmd->add_flag("--force", args->force, io::kForceHelp);
  cmd->callback([args] {
    if (!args->dump.empty()) {
      std::vector<std::filesystem::path> inputs{args->source, args->data};
      if (!args->tokenizer.empty()) inputs.emplace_back(args->tokenizer);
      io::check_output_path(args->dump, io::OutputKind::json, args->force, inputs, "--dump-logprobs");
    }
    InferenceSetup setup = load_for_inference(args->source, args->tokenizer, args->device);
    const std::filesystem::path path(args->data);
    const std::unique_ptr<data::TokenDataset> data = data::open_tokens_or_text(path, *setup.tokenizer);
    data::check_token_ids(*data, setup.model->config().vocab_size, "the model's vocab_size");
    trainer::EvalOptions options = args->options;
    if (options.ctx_len == 0) options.ctx_len = setup.ctx_len > 0 ? setup.ctx_len : 1024;
    const auto bytes = trainer::token_byte_lengths(*setup.tokenizer, setup.model->config().vocab_size);

    // Positions come in stream order, 1 … n-1 of the n tokens evaluated (trainer/inference/evaluate.h).
    const int64_t positions = (options.max_tokens > 0 ? std::min(options.max_tokens, data->size()) : data->size()) - 1;
    ProgressReporter reporter("[eval]", ProgressUnit::tokens);
    trainer::EvalResult r;
    const auto run = [&](std::ofstream* dump) {
      r = trainer::evaluate(setup.model, *data, bytes, options, [&](int64_t pos, int64_t token, double logprob) {
        if (dump) *dump << nlohmann::json{{"pos", pos}, {"token", token}, {"logprob", logprob}}.dump() << '\n';
        reporter.update(pos, positions);
      });
      reporter.finish();
    };
    if (args->dump.empty()) {
      run(nullptr);
    } else {
      write_durably(args->dump, [&](const std::filesystem::path& temp) {
        std::ofstream out(temp);
        if (!out) throw std::runtime_error(fmt::format("{}: cannot create", temp.string()));
        run(&out);
        out.close();
        if (!out) throw std::runtime_error(fmt::format("{}: write failed", args->dump));
      });
    }
    fmt::print("model: {}\ndata: {}\ntokenizer: {}, ctx_len {}\n", setup.description, data->describe(),
               setup.tokenizer->name(), options.ctx_len);
    fmt::print("positions {}  loss {:.6f} nats/token  perplexity {:.4f}  bits_per_byte {:.6f} ({} bytes)\n",
               r.positions, r.loss(), r.perplexity(), r.bits_per_byte(), r.bytes);
  });
}

}  // namespace rwkv::cli
