#pragma once
// The Unicode facts the tokenizer needs, from ICU (libicu-dev): NFC normalization and the
// character classes of the GPT-2 split pattern (\p{L}, \p{N}, \s).
#include <string>
#include <string_view>

namespace rwkv::data {

// NFC of valid UTF-8 text (ASCII and already-NFC text are returned unchanged, cheaply).
std::string nfc(std::string_view utf8);

enum class CharClass : unsigned char { letter, number, space, other };
// letter: general category L*; number: N*; space: the White_Space property (what \s matches in
// the Oniguruma regex engine behind Hugging Face tokenizers); other: everything else.
CharClass char_class(char32_t c);

}  // namespace rwkv::data
