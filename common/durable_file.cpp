#include "common/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

namespace rwkv {

namespace fs = std::filesystem;

namespace {

fs::path folder_of(const fs::path& target) {
  return target.has_parent_path() ? target.parent_path() : fs::path(".");
}

// ".<name>.<kind>-<pid>" next to `target` (kind: tmp, old). Built with append: GCC 12 warns
// falsely (-Wstringop-overflow) on `"." + std::string`.
fs::path sibling(const fs::path& target, const char* kind) {
  std::string name(".");
  name.append(target.filename().string()).append(".").append(kind).append("-");
  name.append(std::to_string(static_cast<long>(::getpid())));
  return folder_of(target) / name;
}

}  // namespace

bool append_whole(int fd, std::string_view bytes) {
  const off_t start = ::lseek(fd, 0, SEEK_END);
  for (size_t written = 0; written < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n > 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = n == 0 ? EIO : errno;
    // Should even this fail, a reader drops the one record that does not parse.
    if (written > 0 && start >= 0) {
      [[maybe_unused]] const int ignored = ::ftruncate(fd, start);
    }
    errno = err;
    return false;
  }
  return true;
}

void remove_tree(const fs::path& path) noexcept {
  std::error_code ignored;
  fs::remove_all(path, ignored);
}

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(path.string() + ": cannot flush to disk: " + why);
  }
  ::close(fd);
}

fs::path temporary_for(const fs::path& target) {
  return sibling(target, "tmp");
}

void commit_durably(const fs::path& temp, const fs::path& target) {
  const fs::path folder = folder_of(target);
  if (fs::is_directory(temp)) {
    for (const auto& entry : fs::directory_iterator(temp))
      if (entry.is_regular_file()) fsync_path(entry.path());
  }
  fsync_path(temp);
  // rename(2) cannot replace an existing folder: move it aside and drop it only once the new one
  // is in place, so a crash in between leaves one of the two under a name we recognise.
  if (fs::is_directory(temp) && fs::exists(target)) {
    const fs::path old = sibling(target, "old");
    remove_tree(old);
    fs::rename(target, old);
    fs::rename(temp, target);
    fsync_path(folder);
    remove_tree(old);
  } else {
    fs::rename(temp, target);
    fsync_path(folder);
  }
}

void write_durably(const fs::path& target, const std::function<void(const fs::path&)>& write) {
  const fs::path folder = folder_of(target);
  if (!fs::is_directory(folder))
    throw std::runtime_error(target.string() + ": output folder " + folder.string() + " does not exist");
  const fs::path temp = temporary_for(target);
  remove_tree(temp);
  try {
    write(temp);
    commit_durably(temp, target);
  } catch (...) {
    remove_tree(temp);
    throw;
  }
}

void write_file_durably(const fs::path& target, std::string_view bytes) {
  write_durably(target, [&](const fs::path& temp) {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw std::runtime_error(temp.string() + ": write failed: " + std::strerror(errno));
  });
}

}  // namespace rwkv
