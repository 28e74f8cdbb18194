#include "trainer/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

namespace rwkv::io {

namespace fs = std::filesystem;

void remove_tree(const fs::path& path) noexcept {
  std::error_code ignored;
  fs::remove_all(path, ignored);
}

void fsync_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(fmt::format("{}: cannot flush to disk: {}", path.string(), why));
  }
  ::close(fd);
}

void write_atomically(const fs::path& target, const std::function<void(const fs::path&)>& write) {
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::is_directory(folder))
    throw std::runtime_error(
        fmt::format("{}: output folder {} does not exist", target.string(), folder.string()));
  const fs::path temp =
      folder / fmt::format(".{}.tmp-{}", target.filename().string(), static_cast<long>(::getpid()));
  remove_tree(temp);
  try {
    write(temp);
    if (fs::is_directory(temp)) {
      for (const auto& entry : fs::directory_iterator(temp))
        if (entry.is_regular_file()) fsync_file(entry.path());
    } else {
      fsync_file(temp);
    }
    // A folder target that already exists cannot be replaced by rename(2): move it aside first
    // and drop it only once the new one is in place.
    if (fs::is_directory(temp) && fs::exists(target)) {
      const fs::path old = folder / fmt::format(".{}.old-{}", target.filename().string(),
                                                static_cast<long>(::getpid()));
      fs::rename(target, old);
      fs::rename(temp, target);
      remove_tree(old);
    } else {
      fs::rename(temp, target);
    }
  } catch (...) {
    remove_tree(temp);
    throw;
  }
}

}  // namespace rwkv::io
