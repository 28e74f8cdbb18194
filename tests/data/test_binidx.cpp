// binidx and HDF5 token files: write → read round trips, the layout an independent numpy reader
// of the Megatron format sees, and clear errors (not crashes) on truncated or corrupt files.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

#include "data/binidx.h"
#include "data/hdf5_tokens.h"
#include "data/token_dataset.h"
#include "tests/support/test_util.h"

using namespace rwkv::data;
namespace fs = std::filesystem;

namespace {

// Random documents ending in EOD 0, ids in [1, vocab).
std::vector<std::vector<int32_t>> random_docs(int n_docs, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> docs(n_docs);
  for (auto& d : docs) {
    d.resize(rng() % 300);
    for (auto& t : d) t = 1 + static_cast<int32_t>(rng() % (vocab - 1));
    d.push_back(0);
  }
  return docs;
}

void write_docs(TokenWriter& w, const std::vector<std::vector<int32_t>>& docs) {
  for (const auto& d : docs) w.add_document(d);
  w.finish();
}

void check_round_trip(const TokenDataset& ds, const std::vector<std::vector<int32_t>>& docs) {
  std::vector<int64_t> flat;
  REQUIRE(ds.num_documents() == static_cast<int64_t>(docs.size()));
  for (size_t d = 0; d < docs.size(); ++d) {
    REQUIRE(ds.document_offset(static_cast<int64_t>(d)) == static_cast<int64_t>(flat.size()));
    flat.insert(flat.end(), docs[d].begin(), docs[d].end());
  }
  REQUIRE(ds.size() == static_cast<int64_t>(flat.size()));
  REQUIRE(ds.document_offset(ds.num_documents()) == ds.size());
  std::vector<int64_t> got(flat.size());
  ds.read(0, ds.size(), got.data());
  REQUIRE(got == flat);
  // Windows at arbitrary positions, crossing document boundaries.
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    const int64_t n = 1 + rng() % 600, pos = rng() % (ds.size() - n);
    std::vector<int64_t> w(n);
    ds.read(pos, n, w.data());
    REQUIRE(std::equal(w.begin(), w.end(), flat.begin() + pos));
  }
  int64_t one;
  REQUIRE_THROWS_AS(ds.read(ds.size(), 1, &one), std::out_of_range);
  REQUIRE_THROWS_AS(ds.read(-1, 1, &one), std::out_of_range);
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::string open_error(const fs::path& p) {
  try {
    open_token_dataset(p);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(opened without error)";
}

}  // namespace

TEST_CASE("binidx uint16 and int32 round trip through our reader and a numpy reader", "[data]") {
  rwkv::test::TempDir dir;
  for (int64_t vocab : {50277, 70000}) {
    const auto docs = random_docs(40, static_cast<int32_t>(vocab), static_cast<uint32_t>(vocab));
    const fs::path prefix = dir / ("v" + std::to_string(vocab));
    {
      auto w = make_token_writer(prefix, TokenFormat::binidx, vocab);
      write_docs(*w, docs);
    }
    REQUIRE(fs::exists(prefix.string() + ".bin"));
    REQUIRE_FALSE(fs::exists(prefix.string() + ".bin.tmp"));
    BinIdxDataset ds(prefix.string() + ".idx");  // either extension names the pair
    REQUIRE(ds.dtype() == (vocab <= 65536 ? BinIdxDType::u16 : BinIdxDType::i32));
    check_round_trip(ds, docs);

    std::string out;
    REQUIRE(rwkv::test::run(rwkv::test::python() + " " +
                                (rwkv::test::source_dir() / "tests/data/read_binidx.py").string() + " " +
                                prefix.string(),
                            &out) == 0);
    const auto j = nlohmann::json::parse(out);
    REQUIRE(j["code"] == (vocab <= 65536 ? 8 : 4));
    REQUIRE(j["doc_idx"].size() == docs.size() + 1);
    std::vector<int64_t> flat;
    for (size_t d = 0; d < docs.size(); ++d) {
      REQUIRE(j["sizes"][d] == docs[d].size());
      REQUIRE(j["doc_idx"][d] == d);
      flat.insert(flat.end(), docs[d].begin(), docs[d].end());
    }
    REQUIRE(j["tokens"].get<std::vector<int64_t>>() == flat);
  }
}

TEST_CASE("HDF5 token files round trip with document offsets", "[data]") {
  rwkv::test::TempDir dir;
  for (int64_t vocab : {50277, 70000}) {
    // Enough tokens to span several chunks and flushes.
    auto docs = random_docs(3000, static_cast<int32_t>(vocab), 11);
    const fs::path file = dir / ("t" + std::to_string(vocab) + ".h5");
    {
      auto w = make_token_writer(file, TokenFormat::hdf5, vocab);
      write_docs(*w, docs);
    }
    REQUIRE_FALSE(fs::exists(file.string() + ".tmp"));
    auto ds = open_token_dataset(file);
    check_round_trip(*ds, docs);
  }
}

TEST_CASE("an unfinished writer leaves no files behind", "[data]") {
  rwkv::test::TempDir dir;
  {
    BinIdxWriter w(dir / "x", BinIdxDType::u16);
    const std::vector<int32_t> doc{5, 6, 0};
    w.add_document(doc);
    const std::vector<int32_t> too_big{70000};
    REQUIRE_THROWS_WITH(w.add_document(too_big), Catch::Contains("does not fit"));
  }
  {
    Hdf5TokenWriter w(dir / "y.h5", 50277);
    const std::vector<int32_t> doc{5, 6, 0};
    w.add_document(doc);
  }
  REQUIRE(fs::is_empty(dir.path()));
}

TEST_CASE("truncated and corrupt binidx files give errors naming the file", "[data]") {
  rwkv::test::TempDir dir;
  const auto docs = random_docs(20, 50277, 3);
  const fs::path prefix = dir / "ok";
  {
    auto w = make_token_writer(prefix, TokenFormat::binidx, 50277);
    write_docs(*w, docs);
  }
  const std::string idx = read_bytes(prefix.string() + ".idx"), bin = read_bytes(prefix.string() + ".bin");
  const fs::path bad = dir / "bad";
  auto with = [&](std::string i, std::string b) {
    write_bytes(bad.string() + ".idx", i);
    write_bytes(bad.string() + ".bin", b);
    return open_error(bad);
  };
  CHECK_THAT(with(idx, bin.substr(0, bin.size() - 2)), Catch::Contains("bad.bin") && Catch::Contains("truncated"));
  CHECK_THAT(with(idx, bin + "xx"), Catch::Contains("bad.bin"));
  CHECK_THAT(with(idx.substr(0, idx.size() - 8), bin), Catch::Contains("bad.idx") && Catch::Contains("truncated"));
  CHECK_THAT(with(idx.substr(0, 20), bin), Catch::Contains("truncated"));
  CHECK_THAT(with("", bin), Catch::Contains("truncated"));
  std::string m = idx;
  m[0] = 'X';
  CHECK_THAT(with(m, bin), Catch::Contains("magic"));
  m = idx;
  m[9] = 2;
  CHECK_THAT(with(m, bin), Catch::Contains("version"));
  m = idx;
  m[17] = 9;
  CHECK_THAT(with(m, bin), Catch::Contains("dtype code 9"));
  m = idx;
  m[17] = 6;
  CHECK_THAT(with(m, bin), Catch::Contains("floating point"));
  m = idx;
  m[18 + 7] = 0x7f;  // n_seq = huge
  CHECK_THAT(with(m, bin), Catch::Contains("does not match"));
  m = idx;
  m[26 + 7] = 0x40;  // n_doc_idx = huge
  CHECK_THAT(with(m, bin), Catch::Contains("does not match"));
  m = idx;
  m[34 + 3] = static_cast<char>(0x80);  // sizes[0] negative
  CHECK_THAT(with(m, bin), Catch::Contains("negative size"));
  m = idx;
  m[34 + 4 * 20 + 8 + 1] = 1;  // pointers[1] moved
  CHECK_THAT(with(m, bin), Catch::Contains("expected"));
  m = idx;
  m[m.size() - 8] = 99;  // last doc_idx entry out of range
  CHECK_THAT(with(m, bin), Catch::Contains("doc_idx"));
  std::mt19937 rng(1);
  for (int i = 0; i < 200; ++i) {  // random byte flips: an error or a consistent file, never a crash
    m = idx;
    m[rng() % m.size()] = static_cast<char>(rng());
    write_bytes(bad.string() + ".idx", m);
    try {
      BinIdxDataset ds(bad);
      std::vector<int64_t> all(ds.size());
      ds.read(0, ds.size(), all.data());
    } catch (const std::runtime_error&) {
    }
  }
  CHECK_THAT(open_error(dir / "missing"), Catch::Contains("missing.idx") && Catch::Contains("cannot open"));
}

TEST_CASE("truncated and corrupt HDF5 token files give errors naming the file", "[data]") {
  rwkv::test::TempDir dir;
  const fs::path file = dir / "ok.h5";
  {
    auto w = make_token_writer(file, TokenFormat::hdf5, 50277);
    write_docs(*w, random_docs(500, 50277, 5));
  }
  const std::string good = read_bytes(file);
  const fs::path bad = dir / "bad.h5";
  for (size_t cut : {size_t{0}, size_t{100}, good.size() / 2, good.size() - 1}) {
    write_bytes(bad, good.substr(0, cut));
    CHECK_THAT(open_error(bad), Catch::Contains("bad.h5"));
  }
  write_bytes(bad, std::string(4096, 'z'));
  CHECK_THAT(open_error(bad), Catch::Contains("not an HDF5 file"));
  CHECK_THAT(open_error(dir / "missing.h5"), Catch::Contains("no such file"));
  std::mt19937 rng(2);
  for (int i = 0; i < 100; ++i) {  // corrupt bytes in the data area: errors, or wrong data, never a crash
    std::string m = good;
    for (int k = 0; k < 8; ++k) m[good.size() / 4 + rng() % (good.size() * 3 / 4)] = static_cast<char>(rng());
    write_bytes(bad, m);
    try {
      auto ds = open_token_dataset(bad);
      std::vector<int64_t> all(ds->size());
      ds->read(0, ds->size(), all.data());
    } catch (const std::runtime_error&) {
    }
  }
}
