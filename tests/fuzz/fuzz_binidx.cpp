// libFuzzer target: a binidx pair (data/binidx.h). The input is split in two: its first byte
// picks where (as a fraction of the rest) the .idx ends and the .bin begins, so both files and
// their mismatch are explored. Any pair may be refused with std::exception; an accepted one must
// read every token and report document offsets within the stream.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "data/binidx.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t rest = size - 1;
  const size_t idx_len = rest * data[0] / 255;
  rwkv::fuzz::write_input("in.idx", data + 1, idx_len);
  rwkv::fuzz::write_input("in.bin", data + 1 + idx_len, rest - idx_len);
  try {
    const rwkv::data::BinIdxDataset ds(rwkv::fuzz::scratch_dir() / "in");
    std::vector<int64_t> tokens(static_cast<size_t>(ds.size()));
    ds.read(0, ds.size(), tokens.data());
    for (int64_t d = 0; d <= ds.num_documents(); ++d) {
      if (ds.document_offset(d) < 0 || ds.document_offset(d) > ds.size()) __builtin_trap();
    }
  } catch (const std::exception&) {
  }
  return 0;
}
