// libFuzzer target: a whole .safetensors file (trainer/io/safetensors_file.h), header parsed and
// every tensor read. Any input may be refused with std::exception; none may crash, leak, trip a
// sanitizer or allocate more than the file could hold (libFuzzer's -rss_limit_mb catches that).
#include <cstddef>
#include <cstdint>
#include <exception>

#include "tests/fuzz/fuzz_input_file.h"
#include "trainer/io/safetensors_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = rwkv::fuzz::write_input("in.safetensors", data, size);
  try {
    rwkv::io::SafetensorsReader reader(path);
    for (const auto& entry : reader.entries()) {
      const auto t = reader.read(entry);
      // A tensor read must be exactly its declared byte range.
      if (static_cast<uint64_t>(t.nbytes()) != entry.end - entry.begin) __builtin_trap();
    }
  } catch (const std::exception&) {
  }
  return 0;
}
