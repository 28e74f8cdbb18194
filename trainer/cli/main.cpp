// The `rwkv` command line: one binary, one subcommand per job (see trainer/cli/commands.h).
#include <cstdio>
#include <exception>

#include "trainer/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"RWKV-4 pretraining framework (LibTorch)", "rwkv"};
  app.require_subcommand(1);
  rwkv::cli::add_train_command(app);
  rwkv::cli::add_env_command(app);
  rwkv::cli::add_info_command(app);
  rwkv::cli::add_bench_command(app);
  rwkv::cli::add_prep_command(app);
  rwkv::cli::add_export_command(app);
  rwkv::cli::add_import_command(app);
  rwkv::cli::add_plan_command(app);
  rwkv::cli::add_generate_command(app);
  rwkv::cli::add_eval_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    // Every user-facing failure (bad config, data, checkpoint) ends here with its message.
    std::fprintf(stderr, "rwkv: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
