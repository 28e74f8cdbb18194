#include "tests/support/test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>

namespace rwkv::test {

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), {}};
}

std::filesystem::path prep_byte_corpus(const std::filesystem::path& dir, const std::string& text) {
  std::filesystem::create_directories(dir / "text");
  std::ofstream(dir / "text" / "a.txt") << text;
  std::string out;
  const std::string command = rwkv_binary().string() + " prep " + (dir / "text").string() + " -o " +
                              (dir / "tok").string() + " --tokenizer byte --quiet";
  INFO(command << "\n" << out);
  REQUIRE(run(command, &out) == 0);
  return dir / "tok";
}

std::string write_tiny_run(const std::filesystem::path& dir, const std::filesystem::path& run_dir,
                           int checkpoint_every, const std::string& train_extra) {
  std::string text;
  for (int i = 0; i < 800; ++i) text += fmt::format("the quick brown fox {} jumps over the lazy dog.\n", i % 17);
  prep_byte_corpus(dir, text);
  std::ofstream(dir / "run.yaml") << fmt::format(R"(model: {{n_layer: 1, n_embd: 32, vocab_size: 256}}
data: {{path: "{}", ctx_len: 16}}
train: {{run_dir: "{}", micro_batch: 2, epoch_samples: 40, epoch_count: 1000, device: cpu, threads: 1{}}}
optimizer: {{lr_init: 1.0e-3}}
checkpoint: {{every_steps: {}}}
log: {{every_steps: 1}}
sample: {{length: 0}}
)",
                                                 (dir / "tok").string(), run_dir.string(), train_extra,
                                                 checkpoint_every);
  return (dir / "run.yaml").string();
}

int run(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  for (;;) {
    path_ = std::filesystem::temp_directory_path() / (tag + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(path_)) break;
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace rwkv::test
