// The `rwkv` command line: one binary, one subcommand per job (see trainer/cli/commands.h).
//
// Every failure ends here as one message on stderr and an exit status: 2 for a usage or config
// error (bad option, bad config field, an output path that is refused), 1 for anything that went
// wrong while working (data, checkpoint, disk, memory). LibTorch's errors carry a C++ backtrace
// in what(); it is shown only with RWKV_BACKTRACE=1. A run that has opened its log file
// (common/log/log.h) finds the message there too, at error level.
#include <c10/util/Exception.h>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>

#include "common/log/log.h"
#include "trainer/cli/commands.h"
#include "trainer/config/yaml_section.h"
#include "trainer/io/output_path.h"

namespace {

constexpr int kUsageError = 2, kRuntimeError = 1;

bool backtrace_wanted() {
  const char* v = std::getenv("RWKV_BACKTRACE");
  return v != nullptr && std::string(v) == "1";
}

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "rwkv: error: %s\n", message.c_str());
  rwkv::logging::error_to_file(message);
  return code;
}

// The current exception as a message and an exit status.
int report_current_exception() {
  try {
    throw;
  } catch (const rwkv::ConfigError& e) {
    return fail(kUsageError, e.what());
  } catch (const rwkv::io::OutputRefused& e) {
    return fail(kUsageError, e.what());
  } catch (const c10::OutOfMemoryError& e) {
    return fail(kRuntimeError, std::string("out of memory: ") +
                                   (backtrace_wanted() ? e.what() : e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return fail(kRuntimeError, backtrace_wanted() ? e.what() : e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return fail(kRuntimeError, "out of memory (an allocation failed): the model, batch or buffer sizes "
                               "need more memory than this machine has");
  } catch (const std::exception& e) {
    return fail(kRuntimeError, e.what());
  } catch (...) {
    return fail(kRuntimeError, "unknown error");
  }
}

// A read through a memory mapping of a file that another process truncated meanwhile (the
// per-batch check in data/token_dataset.h narrows that window but cannot close it).
void on_sigbus(int) {
  static const char message[] =
      "rwkv: error: SIGBUS: a memory-mapped file (a token .bin) shrank while in use: another process truncated "
      "or rewrote it; the data must not change under a run (complete checkpoints are kept)\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, message, sizeof message - 1);
  ::_exit(kRuntimeError);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGBUS, on_sigbus);
  // An exception escaping a worker thread would otherwise abort with a bare "terminate called".
  std::set_terminate([] {
    std::_Exit(std::current_exception() ? report_current_exception()
                                        : fail(kRuntimeError, "terminated without an exception"));
  });
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
    // --help and --version are ParseErrors with status 0; every other one is a usage error.
    return app.exit(e) == 0 ? 0 : kUsageError;
  } catch (...) {
    return report_current_exception();
  }
  return 0;
}
