#pragma once
// UTF-8 helpers for the tokenizers. Text from files may hold invalid UTF-8; like Python's
// bytes.decode("utf-8", errors="replace") (the Unicode "maximal subpart" practice, Unicode
// §3.9 U+FFFD substitution), each maximal ill-formed subsequence becomes one U+FFFD. The BPE
// tokenizer applies this before anything else, so its ids equal those of the Hugging Face
// `tokenizers` package given the same bytes decoded that way (it accepts only valid strings).
#include <cstdint>
#include <string>
#include <string_view>

namespace rwkv::data {

// Length of the well-formed sequence starting at s[i] (1–4), or 0 when s[i] starts an ill-formed
// subsequence; then *bad_len (if given) receives the length of the maximal subpart (≥ 1).
int utf8_sequence_length(std::string_view s, size_t i, int* bad_len = nullptr);

bool is_valid_utf8(std::string_view s);

// `s` with every maximal ill-formed subsequence replaced by U+FFFD.
std::string sanitize_utf8(std::string_view s);

// Decodes the well-formed sequence of length len at s[i].
char32_t utf8_decode_at(std::string_view s, size_t i, int len);

void append_utf8(std::string& out, char32_t c);

}  // namespace rwkv::data
