#pragma once
// What a command may write over. Every subcommand that writes a file or folder asks here first,
// before it reads or computes anything:
//   - an output that does not exist yet is fine (its folder must exist);
//   - an existing output is refused unless the user passed --force;
//   - with --force only a previous output of ours is replaced: a folder that holds the marker
//     file kOutputMarker (our HF exports write it), or a file whose first bytes are the format the
//     command writes (a .pth zip, a safetensors header, a binidx index, HDF5, JSON);
//   - the command's own inputs are never replaced, nor any folder that holds one of them, nor an
//     existing file inside one, with or without --force (e.g. `rwkv export RUN --out RUN`, or
//     RUN/checkpoints/step-N/state.json); a new name inside an input folder is fine.
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace rwkv::io {

// The marker file in a folder we wrote (an HF export), so --force may replace that folder later.
inline constexpr const char* kOutputMarker = ".rwkv-output";

// What the command writes at the path: decides which existing content counts as ours.
enum class OutputKind { pth, safetensors, hf_folder, binidx, hdf5, json };

// A refused output path: a usage error (the `rwkv` binary exits 2).
class OutputRefused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws OutputRefused naming `option` (e.g. "--out"), the path and what to do, unless writing
// `kind` at `out` is allowed by the rules above. `inputs` are the paths the command reads. For
// binidx, `out` is the prefix and both <out>.bin and <out>.idx are checked.
void check_output_path(const std::filesystem::path& out, OutputKind kind, bool force,
                       const std::vector<std::filesystem::path>& inputs, const std::string& option);

// The help text of every --force flag.
inline constexpr const char* kForceHelp =
    "replace an existing output, if it is an earlier output of ours (never an input, never another file)";

}  // namespace rwkv::io
