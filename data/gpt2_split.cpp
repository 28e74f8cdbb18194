#include "data/gpt2_split.h"

#include "data/unicode_text.h"
#include "data/utf8.h"

namespace rwkv::data {
namespace {

struct Char {
  size_t pos;  // byte offset
  CharClass cls;
};

}  // namespace

void gpt2_split(std::string_view text, std::vector<std::string_view>& pieces) {
  thread_local std::vector<Char> chars;
  chars.clear();
  for (size_t i = 0; i < text.size();) {
    const int len = utf8_sequence_length(text, i);
    const int n = len > 0 ? len : 1;  // callers pass valid UTF-8; never loop forever regardless
    chars.push_back({i, char_class(len > 0 ? utf8_decode_at(text, i, len) : 0xFFFD)});
    i += static_cast<size_t>(n);
  }
  const size_t n = chars.size();
  const auto byte_at = [&](size_t k) { return k < n ? chars[k].pos : text.size(); };
  const auto cls = [&](size_t k) { return chars[k].cls; };
  const auto run = [&](size_t k, auto pred) {
    while (k < n && pred(cls(k))) ++k;
    return k;
  };

  size_t i = 0;
  while (i < n) {
    size_t end = i;
    const char c = text[chars[i].pos];
    // 's 't 're 've 'm 'll 'd
    if (c == '\'' && i + 1 < n) {
      const char a = text[chars[i + 1].pos];
      const char b = i + 2 < n ? text[chars[i + 2].pos] : '\0';
      if (a == 's' || a == 't' || a == 'm' || a == 'd') end = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) end = i + 3;
    }
    if (end == i) {
      const size_t j = (c == ' ' && i + 1 < n) ? i + 1 : i;  // the optional leading space
      const CharClass cj = cls(j);
      if (j == i + 1 || cj != CharClass::space) {
        if (cj == CharClass::letter) end = run(j, [](CharClass k) { return k == CharClass::letter; });
        else if (cj == CharClass::number) end = run(j, [](CharClass k) { return k == CharClass::number; });
        else if (cj == CharClass::other) end = run(j, [](CharClass k) { return k == CharClass::other; });
      }
    }
    if (end == i) {
      // Whitespace: \s+(?!\S) keeps the run's last char for the next word; a single space before
      // a non-space falls through to \s+.
      const size_t k = run(i, [](CharClass x) { return x == CharClass::space; });
      end = (k < n && k - i >= 2) ? k - 1 : k;
      if (end == i) end = i + 1;  // unreachable for valid input; guarantees progress
    }
    pieces.push_back(text.substr(chars[i].pos, byte_at(end) - chars[i].pos));
    i = end;
  }
}

}  // namespace rwkv::data
