// `rwkv export`: model weights → the formats inference tools read (.pth for the `rwkv` package,
// ChatRWKV and rwkv.cpp; an HF folder for transformers; bare safetensors).
#include <memory>

#include <fmt/format.h>

#include "common/log/log.h"
#include "common/progress.h"
#include "trainer/cli/commands.h"
#include "trainer/checkpoint/model_source.h"
#include "trainer/io/output_path.h"

namespace rwkv::cli {

namespace {

struct ExportArgs {
  std::string source;
  std::string format = "pth";
  std::string dtype = "bf16";
  std::string out;
  int64_t ctx_len = 0;  // 0: the checkpoint's training ctx_len, else 1024
  bool force = false;
};

int64_t parameter_count(const NamedTensors& tensors) {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.tensor.numel();
  return n;
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  auto* cmd = app.add_subcommand("export", "Write model weights as .pth (reference keys) or a Hugging Face folder");
  cmd->add_option("source", args->source,
                  "A checkpoint (step-N, a checkpoints/ or run directory: the newest complete one), "
                  ".pth, .safetensors (reference keys) or an HF folder")
      ->required();
  cmd->add_option("--format", args->format, "pth | hf | safetensors")
      ->check(CLI::IsMember({"pth", "hf", "safetensors"}))
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "fp32 | bf16 | fp16")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  cmd->add_option("--out", args->out, "Output file (pth, safetensors) or folder (hf)")->required();
  cmd->add_option("--ctx-len", args->ctx_len,
                  "context_length written to an HF config.json (default: the checkpoint's ctx_len, else 1024)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--force", args->force, io::kForceHelp);
  cmd->callback([args] {
    const io::WeightFormat format = args->format == "hf"            ? io::WeightFormat::HfFolder
                                    : args->format == "safetensors" ? io::WeightFormat::Safetensors
                                                                    : io::WeightFormat::Pth;
    io::check_output_path(args->out, io::output_kind(format), args->force, {args->source}, "--out");
    // Reading has no progress line of its own (a checkpoint is read and verified whole); say what waits.
    logging::info("[export] reading " + args->source);
    const io::ModelSource source =
        io::read_model_source(args->source, [](const std::string& w) { logging::warn(w); });
    const io::ModelWeights& weights = source.weights;
    const int64_t ctx_len = args->ctx_len > 0 ? args->ctx_len : source.ctx_len > 0 ? source.ctx_len : 1024;
    ProgressReporter reporter("[export] writing", ProgressUnit::bytes);
    io::write_model_weights(weights, format, args->out, io::parse_weight_dtype(args->dtype), ctx_len,
                            [&reporter](int64_t done, int64_t total) { reporter.update(done, total); });
    reporter.finish();
    const ModelConfig& c = weights.config;
    fmt::print("exported {}: {} tensors ({} parameters; n_layer {}, n_embd {}, vocab_size {}) as {} {} to {}\n",
               source.description, weights.tensors.size(), parameter_count(weights.tensors), c.n_layer, c.n_embd, c.vocab_size,
               args->format, args->dtype, args->out);
  });
}

}  // namespace rwkv::cli
