// Tokenizers: the byte-level BPE gives the same ids as the Hugging Face `tokenizers` package
// (run from the venv) on a varied corpus, with the GPT-NeoX-20B file and with a small BPE that
// `tokenizers` trains here; decode inverts encode; invalid UTF-8 is replaced as Python does.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

#include "data/bpe_tokenizer.h"
#include "data/gpt2_split.h"
#include "data/tokenizer.h"
#include "data/unicode_text.h"
#include "data/utf8.h"
#include "tests/support/test_util.h"

using namespace rwkv::data;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string base64(const std::string& s) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    const uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += t[(v >> k) & 63];
  }
  if (i + 1 == s.size()) {
    const uint32_t v = uint8_t(s[i]) << 16;
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == s.size()) {
    const uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string unbase64(const std::string& s) {
  std::string out;
  uint32_t v = 0;
  int bits = 0;
  for (const char c : s) {
    int d;
    if (c >= 'A' && c <= 'Z') d = c - 'A';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 26;
    else if (c >= '0' && c <= '9') d = c - '0' + 52;
    else if (c == '+') d = 62;
    else if (c == '/') d = 63;
    else continue;
    v = (v << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xFF);
    }
  }
  return out;
}

std::string u8(char32_t c) {
  std::string s;
  append_utf8(s, c);
  return s;
}

// Hand-picked cases plus seeded random mixtures of code points from many scripts and classes.
std::vector<std::string> corpus() {
  std::vector<std::string> c{
      "The quick brown fox jumps over the lazy dog. It's 12:45, isn't it? They'll say \"yes\"!",
      "I'm sure we've met; you'd know. HE'S HERE. ''s 'S 're 've 'll 'd 'm 't",
      "int main(int argc, char** argv) {\n\tfor (int i = 0; i < 10; ++i) {\n\t\tprintf(\"%d\\n\", i);\n\t}\n    return 0;\n}\n",
      "def f(x):\n    return [y**2 for y in x if y % 2 == 0]  # comment\n\n\n",
      "a    b", "x                              y", "  leading", "trailing   ", " ", "  ", "\n", "\n\n\n", "\t \t", "a \n b",
      "word\r\nword\r\n", "   \n   \n", "a\u00a0b\u3000c\u2028d\u0085e\u200bf\ufeffg",
      "Hello<|endoftext|>World<|endoftext|><|padding|>x", "<|endoftext|>", "<|endoftext", "  <|endoftext|>  ",
      "Привет, мир! Ελληνικά κείμενα. Hebrew: שלום עולם. Arabic: مرحبا بالعالم ١٢٣٤",
      "中文文本，日本語のテキスト、한국어 텍스트。", "हिन्दी पाठ नमस्ते ३४५", "ภาษาไทย ๑๒๓", "Ⅻ ² ½ １２３ ⅷ",
      "emoji: 😀😃 👍🏽 👨‍👩‍👧‍👦 🇩🇪🇯🇵 ❤️ ✨", "e\u0301 A\u030a \u1100\u1161\u11a8 \u212b \u00c5 Å",
      "tabs\tand\ttabs\t\t\tend", "12345678901234567890 3.14159 1e-10 0x1F", "$$$ !!! ??? ... ,,, ---- ====",
      "mixed123abc456def", "URL: https://example.com/path?q=1&r=2#frag", "email@example.org",
      std::string(3000, 'a'), std::string(100, ' ') + "x", "control \x01\x02\x7f chars",
      std::string("nul\0byte", 8),
      // invalid UTF-8
      "\xff", "a\xc3", "\xe2\x82", "x\xed\xa0\x80y", "\xf4\x90\x80\x80", "\xc0\xaf", "\xe0\x80\x80",
      "ok \xf0\x9f\x98 broken emoji", "\x80\x80\x80", "caf\xe9 latin-1",
  };
  const std::vector<std::pair<char32_t, char32_t>> ranges{
      {0x20, 0x7e}, {0x20, 0x20}, {0x20, 0x20}, {0x0a, 0x0a}, {0x09, 0x09}, {0xa0, 0xff}, {0x100, 0x17f},
      {0x300, 0x36f}, {0x391, 0x3c9}, {0x410, 0x44f}, {0x5d0, 0x5ea}, {0x620, 0x64a}, {0x660, 0x669},
      {0x900, 0x97f}, {0xe00, 0xe5b}, {0x1100, 0x11ff}, {0x2000, 0x200b}, {0x2028, 0x2029}, {0x2160, 0x2188},
      {0x3000, 0x3003}, {0x3040, 0x30ff}, {0x4e00, 0x4e80}, {0xac00, 0xac80}, {0xff10, 0xff5a},
      {0x1f300, 0x1f64f}, {0x1f3fb, 0x1f3ff}, {0x200d, 0x200d}, {0x27, 0x27}};
  std::mt19937 rng(2024);
  for (int k = 0; k < 150; ++k) {
    std::string s;
    const int len = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < len; ++i) {
      const auto& [lo, hi] = ranges[rng() % ranges.size()];
      s += u8(lo + static_cast<char32_t>(rng() % (hi - lo + 1)));
    }
    c.push_back(s);
  }
  for (int k = 0; k < 40; ++k) {  // raw random bytes, biased toward UTF-8 lead/continuation bytes
    std::string s;
    const int len = 1 + static_cast<int>(rng() % 20);
    for (int i = 0; i < len; ++i) {
      const uint32_t r = rng();
      s += static_cast<char>(r % 3 == 0 ? 0x80 + (r >> 8) % 64 : r % 3 == 1 ? 0xC0 + (r >> 8) % 64 : 0x20 + (r >> 8) % 96);
    }
    c.push_back(s);
  }
  return c;
}

fs::path write_cases(const rwkv::test::TempDir& dir, const std::vector<std::string>& cases) {
  json j = json::array();
  for (const auto& s : cases) j.push_back(base64(s));
  const fs::path p = dir / "cases.json";
  std::ofstream(p) << j.dump();
  return p;
}

json run_python(const std::string& args) {
  std::string out;
  const std::string script = (rwkv::test::source_dir() / "tests/data/hf_tokenize.py").string();
  const int rc = rwkv::test::run(rwkv::test::python() + " " + script + " " + args + " 2>/dev/null", &out);
  INFO(out);
  REQUIRE(rc == 0);
  return json::parse(out);
}

void check_parity(const BpeTokenizer& tok, const fs::path& json_path, const std::vector<std::string>& cases,
                  const fs::path& cases_file) {
  const json ref = run_python("encode " + json_path.string() + " " + cases_file.string());
  REQUIRE(ref.size() == cases.size());
  size_t total = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << ": " << json(sanitize_utf8(cases[i])).dump());
    const auto ids = tok.encode(cases[i]);
    REQUIRE(ids == ref[i].get<std::vector<int32_t>>());
    total += ids.size();
    // decode inverts encode up to the documented input cleaning (replacement, then NFC).
    REQUIRE(tok.decode(ids) == nfc(sanitize_utf8(cases[i])));
  }
  REQUIRE(total > cases.size());
}

}  // namespace

TEST_CASE("invalid UTF-8 is replaced exactly as Python's errors='replace'", "[data][interop]") {
  rwkv::test::TempDir dir;
  std::vector<std::string> cases = corpus();
  std::mt19937 rng(5);
  for (int k = 0; k < 300; ++k) {
    std::string s(1 + rng() % 12, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 0x80 + rng() % 0x78);
    cases.push_back(s);
  }
  const json ref = run_python("replace " + write_cases(dir, cases).string());
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    REQUIRE(sanitize_utf8(cases[i]) == unbase64(ref[i].get<std::string>()));
    REQUIRE(is_valid_utf8(cases[i]) == (sanitize_utf8(cases[i]) == cases[i]));
  }
}

TEST_CASE("GPT-2 split pieces cover the text without gaps", "[data]") {
  std::vector<std::string_view> pieces;
  const std::string s = "I'm here  now\n\n  ok!! 123abc";
  gpt2_split(s, pieces);
  std::vector<std::string> got(pieces.begin(), pieces.end());
  REQUIRE(got == std::vector<std::string>{"I", "'m", " here", " ", " now", "\n\n ", " ok", "!!", " 123", "abc"});
}

TEST_CASE("byte tokenizer round-trips any bytes", "[data]") {
  const auto tok = load_tokenizer("byte");
  REQUIRE(tok->vocab_size() == 256);
  REQUIRE(tok->eod_id() == 0);
  for (const auto& s : corpus()) {
    const auto ids = tok->encode(s);
    REQUIRE(ids.size() == s.size());
    REQUIRE(tok->decode(ids) == s);
  }
  const std::vector<int32_t> bad{256};
  REQUIRE_THROWS_AS(tok->decode(bad), std::out_of_range);
}

TEST_CASE("20B BPE matches the tokenizers package", "[data][interop]") {
  // ../shared/data beside the checkout, or $RWKV_SHARED_DATA_DIR (a worktree elsewhere).
  const char* env = std::getenv("RWKV_SHARED_DATA_DIR");
  fs::path file = rwkv::test::shared_data_dir() / "20B_tokenizer.json";
  if (!fs::exists(file) && env) file = fs::path(env) / "20B_tokenizer.json";
  if (!fs::exists(file)) {
    WARN("skipped: " << file << " is absent");
    return;
  }
  const BpeTokenizer tok(file);
  REQUIRE(tok.vocab_size() == 50277);
  REQUIRE(tok.eod_id() == 0);
  rwkv::test::TempDir dir;
  const auto cases = corpus();
  check_parity(tok, file, cases, write_cases(dir, cases));
}

TEST_CASE("a small BPE trained by the tokenizers package matches it", "[data][interop]") {
  rwkv::test::TempDir dir;
  const auto cases = corpus();
  {
    std::ofstream f(dir / "train.txt");
    for (int rep = 0; rep < 3; ++rep)
      for (const auto& s : cases) f << sanitize_utf8(s) << "\n";
  }
  const fs::path json_path = dir / "small.json";
  {
    std::string out;
    const std::string script = (rwkv::test::source_dir() / "tests/data/hf_tokenize.py").string();
    REQUIRE(rwkv::test::run(rwkv::test::python() + " " + script + " train " + json_path.string() + " " +
                                (dir / "train.txt").string() + " 700",
                            &out) == 0);
  }
  const BpeTokenizer tok(json_path);
  REQUIRE(tok.vocab_size() == 700);
  REQUIRE(tok.eod_id() == 0);
  check_parity(tok, json_path, cases, write_cases(dir, cases));
}

TEST_CASE("tokenizer.json problems are reported with the file name", "[data]") {
  rwkv::test::TempDir dir;
  const auto write = [&](const std::string& text) {
    std::ofstream(dir / "t.json") << text;
    return (dir / "t.json").string();
  };
  const auto error = [&](const std::string& path) -> std::string {
    try {
      BpeTokenizer t(path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(loaded)";
  };
  CHECK_THAT(error((dir / "none.json").string()), Catch::Contains("none.json") && Catch::Contains("cannot open"));
  CHECK_THAT(error(write("{")), Catch::Contains("t.json") && Catch::Contains("not valid JSON"));
  CHECK_THAT(error(write(R"({"model": {"type": "WordPiece"}})")), Catch::Contains("expected 'BPE'"));
  CHECK_THAT(error(write(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "NFKC"},
                             "pre_tokenizer": {"type": "ByteLevel"}})")),
             Catch::Contains("normalizer 'NFKC'"));
  CHECK_THAT(error(write(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}})")),
             Catch::Contains("lacks the byte-level token"));
  CHECK_THAT(error(write(R"({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true}})")),
             Catch::Contains("add_prefix_space"));
}
