// `rwkv prep`: .jsonl / .jsonl.zst / .txt inputs → binidx and HDF5 files whose documents are the
// tokenizer's output followed by EOD; bad lines are reported with file:line; identical output for
// any thread count; the output appears only when complete; the CLI prints the magic primes.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <zstd.h>

#include <fstream>
#include <random>

#include "data/binidx.h"
#include "data/line_reader.h"
#include "data/prep.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "tests/support/test_util.h"

using namespace rwkv::data;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> sample_texts(int n, uint32_t seed) {
  static const std::vector<std::string> words{"the", "quick", "brown", "fox", "jumps", "über", "naïve", "日本語",
                                              "😀", "  ", "\n", "\t", "It's", "123", "x=y+1;", "Ω"};
  std::mt19937 rng(seed);
  std::vector<std::string> out(n);
  for (auto& s : out) {
    const int len = 1 + static_cast<int>(rng() % 80);  // empty texts are skipped by prep
    for (int i = 0; i < len; ++i) s += words[rng() % words.size()] + (rng() % 3 ? " " : "");
  }
  return out;
}

std::string jsonl(const std::vector<std::string>& texts) {
  std::string out;
  for (const auto& t : texts) out += nlohmann::json{{"text", t}, {"meta", {{"pile_set_name", "test"}}}}.dump() + "\n";
  return out;
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::string zstd_compress(const std::string& s) {
  std::string out(ZSTD_compressBound(s.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), s.data(), s.size(), 3);
  REQUIRE_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::vector<int64_t> read_all(const TokenDataset& ds) {
  std::vector<int64_t> v(static_cast<size_t>(ds.size()));
  ds.read(0, ds.size(), v.data());
  return v;
}

// Checks that `ds` holds exactly tokenizer(text)+EOD for each expected text, in order.
void check_documents(const TokenDataset& ds, const Tokenizer& tok, const std::vector<std::string>& texts) {
  REQUIRE(ds.num_documents() == static_cast<int64_t>(texts.size()));
  const auto all = read_all(ds);
  for (size_t d = 0; d < texts.size(); ++d) {
    const auto ids = tok.encode(texts[d]);
    const int64_t begin = ds.document_offset(static_cast<int64_t>(d)), end = ds.document_offset(static_cast<int64_t>(d) + 1);
    REQUIRE(end - begin == static_cast<int64_t>(ids.size()) + 1);
    REQUIRE(std::equal(ids.begin(), ids.end(), all.begin() + begin));
    REQUIRE(all[static_cast<size_t>(end - 1)] == tok.eod_id());
  }
}

// ../shared/data beside the checkout, or $RWKV_SHARED_DATA_DIR (a worktree elsewhere).
fs::path tokenizer_20b_path() {
  const char* env = std::getenv("RWKV_SHARED_DATA_DIR");
  const fs::path beside = rwkv::test::shared_data_dir() / "20B_tokenizer.json";
  return fs::exists(beside) || !env ? beside : fs::path(env) / "20B_tokenizer.json";
}

std::unique_ptr<Tokenizer> test_tokenizer() {
  const fs::path bpe = tokenizer_20b_path();
  if (fs::exists(bpe)) return load_tokenizer(bpe.string());
  WARN("20B_tokenizer.json absent: prep tests use the byte tokenizer");
  return make_byte_tokenizer();
}

}  // namespace

TEST_CASE("prep of jsonl, jsonl.zst and txt inputs round-trips the tokenizer's output", "[data]") {
  rwkv::test::TempDir dir;
  const auto tok = test_tokenizer();
  const auto a = sample_texts(300, 1), b = sample_texts(400, 2), c = sample_texts(1, 3);
  fs::create_directories(dir / "in/sub");
  write_file(dir / "in/a.jsonl", jsonl(a));
  write_file(dir / "in/sub/b.jsonl.zst", zstd_compress(jsonl(b)));
  write_file(dir / "in/sub/c.txt", c[0]);
  write_file(dir / "in/ignored.md", "not an input");
  std::vector<std::string> expected = a;  // sorted order: a.jsonl, sub/b.jsonl.zst, sub/c.txt
  expected.insert(expected.end(), b.begin(), b.end());
  expected.push_back(c[0]);

  for (const auto format : {TokenFormat::binidx, TokenFormat::hdf5}) {
    std::vector<std::vector<int64_t>> outputs;
    for (int threads : {1, 3}) {
      PrepOptions opt;
      opt.inputs = {dir / "in"};
      opt.output = format == TokenFormat::hdf5 ? dir / ("out" + std::to_string(threads) + ".h5")
                                               : dir / ("out" + std::to_string(threads));
      opt.format = format;
      opt.threads = threads;
      int reports = 0;
      const PrepStats st = prepare_tokens(opt, *tok, [&](const PrepStats&) { ++reports; });
      REQUIRE(reports >= 1);
      REQUIRE(st.bad_lines == 0);
      const auto ds = open_token_dataset(opt.output);
      REQUIRE(st.documents == ds->num_documents());
      REQUIRE(st.tokens == ds->size());
      check_documents(*ds, *tok, expected);
      outputs.push_back(read_all(*ds));
    }
    REQUIRE(outputs[0] == outputs[1]);
  }
}

TEST_CASE("prep reports bad lines with file:line, skips or aborts", "[data]") {
  rwkv::test::TempDir dir;
  const auto tok = make_byte_tokenizer();
  std::string in = jsonl({"first doc"});
  in += "{not json\n";                       // line 2
  in += "\n";                                // blank: ignored
  in += R"({"title": "no text"})" "\n";       // line 4
  in += R"({"text": 42})" "\n";               // line 5
  in += "[1, 2]\n";                          // line 6
  in += R"({"text": "caf)" "\xe9" R"( bytes"})" "\n";  // invalid UTF-8: replaced, kept
  in += R"({"text": ""})" "\n";               // empty: skipped, counted
  in += R"({"text": "last doc"})";            // no final newline
  write_file(dir / "x.jsonl", in);
  PrepOptions opt;
  opt.inputs = {dir / "x.jsonl"};
  opt.output = dir / "out";
  opt.threads = 2;
  std::vector<std::string> warnings;
  const PrepStats st = prepare_tokens(opt, *tok, {}, [&](const std::string& w) { warnings.push_back(w); });
  REQUIRE(st.bad_lines == 4);
  REQUIRE(st.empty_documents == 1);
  const std::string f = (dir / "x.jsonl").string();
  REQUIRE(warnings == std::vector<std::string>{f + ":2: invalid JSON", f + ":4: no \"text\" field",
                                               f + ":5: field \"text\" is not a string", f + ":6: not a JSON object"});
  BinIdxDataset ds(dir / "out");
  check_documents(ds, *tok, {"first doc", "caf\xEF\xBF\xBD bytes", "last doc"});

  opt.abort_on_bad_line = true;
  opt.output = dir / "aborted";
  REQUIRE_THROWS_WITH(prepare_tokens(opt, *tok), Catch::Contains(f + ":2: invalid JSON"));
  REQUIRE_FALSE(fs::exists(dir / "aborted.bin"));
  REQUIRE_FALSE(fs::exists(dir / "aborted.bin.tmp"));
  REQUIRE_FALSE(fs::exists(dir / "aborted.idx"));
}

TEST_CASE("prep input errors: missing, unsupported, truncated zstd", "[data]") {
  rwkv::test::TempDir dir;
  const auto tok = make_byte_tokenizer();
  PrepOptions opt;
  opt.output = dir / "out";
  opt.inputs = {dir / "missing.jsonl"};
  REQUIRE_THROWS_WITH(prepare_tokens(opt, *tok), Catch::Contains("missing.jsonl: no such file"));
  write_file(dir / "x.csv", "a,b");
  opt.inputs = {dir / "x.csv"};
  REQUIRE_THROWS_WITH(prepare_tokens(opt, *tok), Catch::Contains("x.csv: unsupported input"));
  const std::string z = zstd_compress(jsonl(sample_texts(2000, 9)));
  write_file(dir / "t.jsonl.zst", z.substr(0, z.size() / 2));
  opt.inputs = {dir / "t.jsonl.zst"};
  REQUIRE_THROWS_WITH(prepare_tokens(opt, *tok), Catch::Contains("t.jsonl.zst") && Catch::Contains("truncated"));
  write_file(dir / "g.jsonl.zst", "this is not zstd at all\n");
  opt.inputs = {dir / "g.jsonl.zst"};
  REQUIRE_THROWS_WITH(prepare_tokens(opt, *tok), Catch::Contains("g.jsonl.zst: zstd decompression failed"));
  REQUIRE(fs::is_empty(dir.path()) == false);
  for (const auto& e : fs::directory_iterator(dir.path()))
    REQUIRE(e.path().filename().string().rfind("out", 0) != 0);  // nothing written under the output name
}

TEST_CASE("line reader handles CRLF, long lines and concatenated zstd frames", "[data]") {
  rwkv::test::TempDir dir;
  const std::string long_line(1 << 20, 'q');
  write_file(dir / "a.jsonl.zst", zstd_compress("one\r\n" + long_line + "\n") + zstd_compress("three"));
  LineReader r(dir / "a.jsonl.zst");
  std::string line;
  REQUIRE(r.next(line));
  REQUIRE(line == "one");
  REQUIRE(r.next(line));
  REQUIRE(line == long_line);
  REQUIRE(r.next(line));
  REQUIRE(line == "three");
  REQUIRE(r.line_number() == 3);
  REQUIRE_FALSE(r.next(line));
}

TEST_CASE("rwkv prep CLI prints the summary and fails cleanly on bad input", "[data]") {
  rwkv::test::TempDir dir;
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "In the beginning was the word, and the word was good. ";
  write_file(dir / "book.txt", text);
  const std::string bin = rwkv::test::rwkv_binary().string();
  std::string out;
  REQUIRE(rwkv::test::run(bin + " prep " + (dir / "book.txt").string() + " -o " + (dir / "book").string() +
                              " --threads 2",
                          &out) == 0);
  REQUIRE_THAT(out, Catch::Contains("documents: 1") && Catch::Contains("tokens: " + std::to_string(text.size() + 1)));
  REQUIRE_THAT(out, Catch::Contains("ctx_len   512: ") && Catch::Contains("ctx_len  8192: none"));
  REQUIRE(BinIdxDataset(dir / "book").size() == static_cast<int64_t>(text.size()) + 1);

  // A failing run leaves an existing output untouched.
  const auto before = fs::file_size(dir / "book.bin");
  write_file(dir / "bad.jsonl", "{oops\n");
  REQUIRE(rwkv::test::run(bin + " prep " + (dir / "bad.jsonl").string() + " -o " + (dir / "book").string() +
                              " --on-bad-line abort --force",
                          &out) != 0);
  REQUIRE_THAT(out, Catch::Contains("bad.jsonl:1: invalid JSON"));
  REQUIRE(fs::file_size(dir / "book.bin") == before);
  REQUIRE_FALSE(fs::exists(dir / "book.bin.tmp"));
  REQUIRE(rwkv::test::run(bin + " prep " + (dir / "nope").string() + " -o " + (dir / "x").string(), &out) != 0);
  REQUIRE_THAT(out, Catch::Contains("nope: no such file or directory"));
  REQUIRE(rwkv::test::run(bin + " prep " + (dir / "book.txt").string() + " -o " + (dir / "x").string() +
                              " --tokenizer " + (dir / "no-tokenizer.json").string(),
                          &out) != 0);
  REQUIRE_THAT(out, Catch::Contains("no-tokenizer.json: cannot open"));
}
