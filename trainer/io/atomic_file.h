#pragma once
// Output files appear under their final name only when complete (bad input or a crash must not damage
// existing files on failure).
#include <filesystem>
#include <functional>

namespace rwkv::io {

// Calls write(temp) with a fresh temporary path next to `target` (same folder, so the rename is
// atomic), fsyncs it, then renames it onto `target`. If write throws, the temporary (a file or a
// folder) is removed and the exception propagates; `target` is untouched.
void write_atomically(const std::filesystem::path& target,
                      const std::function<void(const std::filesystem::path& temp)>& write);

// Removes a file or a folder tree, best effort (cleanup on a failure path must not throw).
void remove_tree(const std::filesystem::path& path) noexcept;

// Flushes a written file to disk (fsync); throws naming the file on failure.
void fsync_file(const std::filesystem::path& path);

}  // namespace rwkv::io
