// A bounded, deterministic mutation fuzzer for the readers of untrusted files: the state-dict
// unpickler, the safetensors reader and the binidx reader. Each starts from a valid file of ours,
// applies random byte flips, overwrites with boundary values, insertions, deletions and
// truncations, and feeds the result back. A reader may accept the input or throw a
// std::exception; it may not crash, hang or ask for an impossible allocation. Fixed seeds, so a
// failure reproduces; a few thousand inputs each, well under a second apiece.
#include <catch2/catch.hpp>

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "data/binidx.h"
#include "trainer/io/pth_writer.h"
#include "trainer/io/safetensors_file.h"
#include "trainer/io/state_dict_unpickler.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace {

constexpr int kInputs = 3000;

std::string mutate(std::string s, std::mt19937_64& rng) {
  const auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  static const unsigned char boundary[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 6) {
      case 0: if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8)); break;
      case 1: if (!s.empty()) s[pick(s.size())] = static_cast<char>(boundary[pick(sizeof boundary)]); break;
      case 2: s.insert(pick(s.size() + 1), 1 + pick(8), static_cast<char>(rng())); break;
      case 3: if (!s.empty()) s.erase(pick(s.size()), 1 + pick(8)); break;
      case 4: s.resize(pick(s.size() + 1)); break;
      case 5:  // a little-endian 64-bit field set to an extreme
        if (s.size() >= 8) {
          const uint64_t v = rng() % 2 ? ~uint64_t{0} : uint64_t{1} << (rng() % 64);
          std::memcpy(s.data() + pick(s.size() - 7), &v, 8);
        }
        break;
    }
  }
  return s;
}

std::string bytes_of(const fs::path& p) { return rwkv::test::slurp(p); }

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Runs `feed` on kInputs mutations of `seed`; returns how many were accepted.
template <class Feed>
int fuzz(const std::string& seed, uint64_t rng_seed, Feed feed) {
  std::mt19937_64 rng(rng_seed);
  int accepted = 0;
  for (int i = 0; i < kInputs; ++i) {
    const std::string input = mutate(seed, rng);
    try {
      feed(input);
      ++accepted;
    } catch (const std::exception&) {
      // refused with a message: what a reader should do with a bad file
    }
  }
  return accepted;
}

rwkv::NamedTensors sample_tensors() {
  return {{"emb.weight", torch::randn({4, 3})}, {"blocks.0.att.time_decay", torch::randn({3})},
          {"head.weight", torch::randn({2, 3}).to(torch::kBFloat16)}};
}

}  // namespace

TEST_CASE("the state-dict unpickler survives mutated pickles", "[io]") {
  rwkv::test::TempDir dir("rwkv-fuzz-pickle");
  rwkv::io::write_pth(dir / "w.pth", sample_tensors());
  caffe2::serialize::PyTorchStreamReader zip((dir / "w.pth").string());
  const auto [data, size] = zip.getRecord("data.pkl");
  const std::string pickle(static_cast<const char*>(data.get()), size);
  REQUIRE(rwkv::io::unpickle_state_dict(pickle, "seed").size() == 3);
  const int accepted = fuzz(pickle, 17, [](const std::string& in) { rwkv::io::unpickle_state_dict(in, "fuzz"); });
  CHECK(accepted < kInputs);  // the mutations do reach the error paths
}

TEST_CASE("the safetensors reader survives mutated files", "[io]") {
  rwkv::test::TempDir dir("rwkv-fuzz-safetensors");
  rwkv::io::write_safetensors(dir / "w.safetensors", sample_tensors());
  const std::string seed = bytes_of(dir / "w.safetensors");
  const fs::path input = dir / "in.safetensors";
  const int accepted = fuzz(seed, 23, [&](const std::string& in) {
    write_bytes(input, in);
    for (const auto& [name, t] : rwkv::io::read_safetensors(input)) CHECK(t.defined());
  });
  CHECK(accepted < kInputs);
}

TEST_CASE("the binidx reader survives mutated indexes and short .bin files", "[io]") {
  rwkv::test::TempDir dir("rwkv-fuzz-binidx");
  {
    rwkv::data::BinIdxWriter w(dir / "seed", rwkv::data::BinIdxDType::u16);
    for (int d = 0; d < 5; ++d) {
      std::vector<int32_t> doc(static_cast<size_t>(3 + d), d);
      w.add_document(doc);
    }
    w.finish();
  }
  const std::string idx = bytes_of(dir / "seed.idx"), bin = bytes_of(dir / "seed.bin");
  std::mt19937_64 bin_rng(5);
  const int accepted = fuzz(idx, 29, [&](const std::string& in) {
    write_bytes(dir / "in.idx", in);
    write_bytes(dir / "in.bin", bin_rng() % 4 == 0 ? mutate(bin, bin_rng) : bin);
    const rwkv::data::BinIdxDataset ds(dir / "in");
    std::vector<int64_t> tokens(static_cast<size_t>(ds.size()));
    ds.read(0, ds.size(), tokens.data());
    for (int64_t d = 0; d <= ds.num_documents(); ++d) CHECK(ds.document_offset(d) <= ds.size());
  });
  CHECK(accepted < kInputs);
}
