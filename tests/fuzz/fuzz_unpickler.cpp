// libFuzzer target: the bytes of a state dict's data.pkl (trainer/io/state_dict_unpickler.h).
// Any input may be refused with std::exception; none may crash, leak or trip a sanitizer.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string_view>

#include "trainer/io/state_dict_unpickler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tensors =
        rwkv::io::unpickle_state_dict(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& t : tensors) {
      // What PthReader relies on afterwards: one stride per dimension.
      if (t.sizes.size() != t.strides.size()) __builtin_trap();
    }
  } catch (const std::exception&) {
  }
  return 0;
}
