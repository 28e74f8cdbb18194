// `rwkv generate MODEL --prompt TEXT`: text from a checkpoint, .pth or HF folder through RNN mode
// (trainer/inference/generate.h). Prints the text, the prefill and decode speeds, and the state size and
// process RSS at several lengths: both stay flat as the text grows (paper claim C5, kernels/README.md "WKV").
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "data/tokenizer.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/option_checks.h"
#include "trainer/inference/generate.h"
#include "trainer/inference/inference_setup.h"
#include "trainer/train/metrics.h"

namespace rwkv::cli {

namespace {

struct GenerateArgs {
  std::string source, prompt, tokenizer, device = "auto";
  trainer::SamplingOptions sampling;
  int64_t max_tokens = 100;
  bool show_ids = false;
};

int64_t rounded_up_to(int64_t n, int64_t step) { return (n + step - 1) / step * step; }

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate text in RNN mode from a checkpoint, .pth or HF folder");
  cmd->add_option("model", args->source, "checkpoint (step-N, checkpoints/ or run dir), .pth, .safetensors or HF folder")
      ->required();
  cmd->add_option("--prompt", args->prompt, "text the generation continues (empty: the end-of-document token)");
  cmd->add_option("--tokenizer", args->tokenizer, "byte or a tokenizer.json (default: the checkpoint's, else byte)");
  cmd->add_option("--temperature", args->sampling.temperature, "0: greedy")
      ->check(finite_non_negative)
      ->capture_default_str();
  cmd->add_option("--top-p", args->sampling.top_p, "nucleus sampling mass in (0, 1]")->capture_default_str();
  cmd->add_option("--max-tokens", args->max_tokens, "tokens to generate")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--seed", args->sampling.seed, "sampler seed")->check(non_negative_integer)->capture_default_str();
  cmd->add_option("--device", args->device, "auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--show-ids", args->show_ids, "also print the generated token ids");
  cmd->callback([args] {
    trainer::check_sampling_options(args->sampling);
    const InferenceSetup setup = load_for_inference(args->source, args->tokenizer, args->device);
    std::vector<int32_t> ids = setup.tokenizer->encode(args->prompt);
    if (ids.empty()) ids.push_back(setup.tokenizer->eod_id());
    const std::vector<int64_t> prompt(ids.begin(), ids.end());
    RWKV model = setup.model;

    // State bytes and RSS at about every quarter of the generation, and at the end.
    const int64_t every = std::max<int64_t>(1, rounded_up_to(args->max_tokens, 4) / 4);
    std::vector<std::string> memory_rows;
    const auto gen = trainer::generate(model, prompt, args->max_tokens, args->sampling,
                                       [&](const trainer::GenerationProgress& p) {
                                         if (p.generated % every != 0 && p.generated != args->max_tokens) return;
                                         memory_rows.push_back(fmt::format(
                                             "  {:>8} {:>12} {:>12.1f}", static_cast<int64_t>(prompt.size()) + p.generated,
                                             trainer::state_bytes(*p.state), trainer::resident_memory_gib() * 1024));
                                       });
    const std::vector<int32_t> out(gen.tokens.begin(), gen.tokens.end());
    fmt::print("{}{}\n", args->prompt, setup.tokenizer->decode(out));
    if (args->show_ids) fmt::print("ids: {}\n", fmt::join(gen.tokens, " "));
    fmt::print("--- {} on {}, tokenizer {}\n", setup.description, model->emb->weight.device().str(),
               setup.tokenizer->name());
    fmt::print("prefill: {} tokens in {:.3f} s ({:.1f} tokens/s, parallel mode)\n", prompt.size(),
               gen.prefill_seconds, static_cast<double>(prompt.size()) / std::max(gen.prefill_seconds, 1e-9));
    fmt::print("decode: {} tokens in {:.3f} s ({:.1f} tokens/s, RNN mode)\n", gen.tokens.size(), gen.decode_seconds,
               static_cast<double>(gen.tokens.size()) / std::max(gen.decode_seconds, 1e-9));
    fmt::print("memory as the text grows (state: the {} vectors carried per layer):\n  {:>8} {:>12} {:>12}\n",
               5, "tokens", "state_bytes", "rss_MiB");
    for (const auto& row : memory_rows) fmt::print("{}\n", row);
  });
}

}  // namespace rwkv::cli
