#pragma once
// The one way this project writes a file that must survive: every writer (checkpoints, weight
// exports, token datasets, config.yaml, metrics rotation, eval dumps, bench JSON) goes through it.
//
// A file or folder is built under a temporary name next to its target (same folder, so rename(2)
// is atomic), flushed to disk (fsync of each file), renamed onto the target, and then the folder
// holding it is fsynced so that the rename itself survives a power cut. A reader therefore sees
// either the old target or the complete new one, never a torn one; on failure the temporary is
// removed and the target is untouched.
#include <filesystem>
#include <functional>
#include <string_view>

namespace rwkv {

// write(temp) with a fresh temporary path next to `target`, then commit_durably(temp, target).
// If write (or the commit) throws, the temporary (a file or a folder) is removed and the
// exception propagates. Throws when the target's folder does not exist.
void write_durably(const std::filesystem::path& target,
                   const std::function<void(const std::filesystem::path& temp)>& write);

// `bytes` as the whole content of `target`, through write_durably.
void write_file_durably(const std::filesystem::path& target, std::string_view bytes);

// For writers that stream into their own temporary (token datasets): fsyncs `temp` (a file, or a
// folder and the regular files in it), renames it onto `target` (an existing folder target is
// moved aside first and removed once the new one is in place) and fsyncs the parent folder.
void commit_durably(const std::filesystem::path& temp, const std::filesystem::path& target);

// The temporary name write_durably uses for `target`: ".<name>.tmp-<pid>" in the same folder.
std::filesystem::path temporary_for(const std::filesystem::path& target);

// fsync of a file or of a folder (its entry list); throws naming the path and errno's text.
void fsync_path(const std::filesystem::path& path);

// Appends `bytes` to the open file `fd` whole or, when a write fails, not at all: a partial write
// is cut off again, so an append-only log (metrics.jsonl, TensorBoard events) never holds a torn
// record. Returns false with errno that of the failed write.
bool append_whole(int fd, std::string_view bytes);

// Removes a file or a folder tree, best effort (cleanup on a failure path must not throw).
void remove_tree(const std::filesystem::path& path) noexcept;

}  // namespace rwkv
