#include "data/unicode_text.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <array>
#include <stdexcept>
#include <vector>

namespace rwkv::data {
namespace {

const UNormalizer2* nfc_instance() {
  static const UNormalizer2* n = [] {
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2* p = unorm2_getNFCInstance(&err);
    if (U_FAILURE(err)) throw std::runtime_error(std::string("ICU NFC unavailable: ") + u_errorName(err));
    return p;
  }();
  return n;
}

CharClass classify(char32_t c) {
  if (u_isUWhiteSpace(static_cast<UChar32>(c))) return CharClass::space;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_UPPERCASE_LETTER: case U_LOWERCASE_LETTER: case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER: case U_OTHER_LETTER:
      return CharClass::letter;
    case U_DECIMAL_DIGIT_NUMBER: case U_LETTER_NUMBER: case U_OTHER_NUMBER:
      return CharClass::number;
    default:
      return CharClass::other;
  }
}

const std::array<CharClass, 128>& ascii_classes() {
  static const std::array<CharClass, 128> t = [] {
    std::array<CharClass, 128> a{};
    for (char32_t c = 0; c < 128; ++c) a[c] = classify(c);
    return a;
  }();
  return t;
}

}  // namespace

CharClass char_class(char32_t c) { return c < 128 ? ascii_classes()[c] : classify(c); }

std::string nfc(std::string_view utf8) {
  bool ascii = true;
  for (const char ch : utf8)
    if (static_cast<unsigned char>(ch) >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii) return std::string(utf8);
  UErrorCode err = U_ZERO_ERROR;
  int32_t n16 = 0;
  u_strFromUTF8(nullptr, 0, &n16, utf8.data(), static_cast<int32_t>(utf8.size()), &err);
  err = U_ZERO_ERROR;
  std::vector<UChar> src(static_cast<size_t>(n16) + 1);
  u_strFromUTF8(src.data(), n16 + 1, nullptr, utf8.data(), static_cast<int32_t>(utf8.size()), &err);
  if (U_FAILURE(err)) throw std::runtime_error(std::string("NFC: bad UTF-8: ") + u_errorName(err));
  const UNormalizer2* norm = nfc_instance();
  if (unorm2_isNormalized(norm, src.data(), n16, &err) && U_SUCCESS(err)) return std::string(utf8);
  err = U_ZERO_ERROR;
  const int32_t cap = unorm2_normalize(norm, src.data(), n16, nullptr, 0, &err);
  err = U_ZERO_ERROR;
  std::vector<UChar> dst(static_cast<size_t>(cap) + 1);
  unorm2_normalize(norm, src.data(), n16, dst.data(), cap + 1, &err);
  if (U_FAILURE(err)) throw std::runtime_error(std::string("NFC failed: ") + u_errorName(err));
  int32_t n8 = 0;
  err = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &n8, dst.data(), cap, &err);
  err = U_ZERO_ERROR;
  std::string out(static_cast<size_t>(n8), '\0');
  u_strToUTF8(out.data(), n8, nullptr, dst.data(), cap, &err);  // unterminated: a warning
  if (U_FAILURE(err))
    throw std::runtime_error(std::string("NFC: UTF-8 output failed: ") + u_errorName(err));
  return out;
}

}  // namespace rwkv::data
