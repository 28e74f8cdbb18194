// `rwkv prep`: tokenize raw text into binidx or HDF5 token files (data/prep.h does the work).
#include <fmt/format.h>

#include "common/log/log.h"
#include "common/progress.h"
#include "data/prep.h"
#include "data/tokenizer.h"
#include "trainer/cli/commands.h"
#include "trainer/io/output_path.h"

namespace rwkv::cli {

void add_prep_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> inputs;
    std::string output, tokenizer = "byte", format = "auto", on_bad_line = "skip", text_field = "text";
    int threads = 0;
    bool quiet = false, force = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "prep", "Tokenize .jsonl / .jsonl.zst / .txt files or directories into binidx (.bin/.idx) or HDF5");
  cmd->add_option("inputs", args->inputs, "Input files or directories")->required();
  cmd->add_option("-o,--output", args->output, "Output: binidx prefix, or a .h5/.hdf5 file")->required();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "'byte' (256 ids, default) or a Hugging Face tokenizer.json (e.g. 20B_tokenizer.json)");
  cmd->add_option("--format", args->format, "auto (from the output name), binidx or hdf5")
      ->check(CLI::IsMember({"auto", "binidx", "hdf5"}));
  cmd->add_option("--threads", args->threads, "Tokenizer threads (0: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--text-field", args->text_field, "JSON field holding the document text");
  cmd->add_option("--on-bad-line", args->on_bad_line, "skip (report and go on) or abort")
      ->check(CLI::IsMember({"skip", "abort"}));
  cmd->add_flag("-q,--quiet", args->quiet, "No progress line (common/progress.h)");
  cmd->add_flag("--force", args->force, io::kForceHelp);
  cmd->callback([args] {
    data::PrepOptions opt;
    for (const auto& i : args->inputs) opt.inputs.emplace_back(i);
    opt.output = args->output;
    const auto ext = opt.output.extension();
    const bool h5_name = ext == ".h5" || ext == ".hdf5";
    opt.format = args->format == "hdf5" || (args->format == "auto" && h5_name) ? data::TokenFormat::hdf5
                                                                               : data::TokenFormat::binidx;
    std::vector<std::filesystem::path> inputs(opt.inputs.begin(), opt.inputs.end());
    if (args->tokenizer != "byte") inputs.emplace_back(args->tokenizer);
    io::check_output_path(opt.output, opt.format == data::TokenFormat::hdf5 ? io::OutputKind::hdf5 : io::OutputKind::binidx,
                          args->force, inputs, "--output");
    opt.threads = args->threads;
    opt.text_field = args->text_field;
    opt.abort_on_bad_line = args->on_bad_line == "abort";
    const auto tok = data::load_tokenizer(args->tokenizer);
    ProgressReporter reporter("[prep]", ProgressUnit::bytes);
    data::PrepProgress progress;
    if (!args->quiet)
      progress = [&reporter](const data::PrepStats& s) {
        reporter.update(static_cast<int64_t>(s.input_bytes), static_cast<int64_t>(s.total_input_bytes),
                        fmt::format("{} docs  {} tokens", s.documents, s.tokens));
      };
    const auto warn = [&reporter](const std::string& w) {
      reporter.clear_live_line();
      logging::warn(w);
    };
    logging::info(fmt::format("[prep] tokenizer {} (vocab {}), {} output", tok->name(), tok->vocab_size(),
                              opt.format == data::TokenFormat::hdf5 ? "HDF5" : "binidx"));
    const auto stats = data::prepare_tokens(opt, *tok, progress, warn);
    reporter.finish();
    fmt::print("{}", data::format_summary(stats, opt.output));
  });
}

}  // namespace rwkv::cli
