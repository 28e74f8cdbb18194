#include "tests/test_util.h"

#include <array>
#include <cstdio>
#include <random>
#include <sys/wait.h>
#include <ftw.h>
#include <unistd.h>

namespace rwkv::test {

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
  // nftw, not std::filesystem::remove_all: libtorch.so exports its own std::filesystem functions,
  // and its remove_all crashes (a null call) on a directory with subdirectories.
  const auto rm = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); };
  ::nftw(path_.c_str(), rm, 16, FTW_DEPTH | FTW_PHYS);
}

}  // namespace rwkv::test
