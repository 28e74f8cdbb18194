// [inference] RNN-mode generation (trainer/inference/generate.h, `rwkv generate`) and evaluation
// (trainer/inference/evaluate.h, `rwkv eval`), checked against independent references: the parallel
// forward re-run on the growing text, and per-window log-softmax of the parallel forward.
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "data/token_writer.h"
#include "tests/support/test_random_weights.h"
#include "tests/support/test_tiny_run.h"
#include "tests/support/test_util.h"
#include "trainer/inference/evaluate.h"
#include "trainer/inference/generate.h"
#include "trainer/io/hf_folder.h"
#include "trainer/checkpoint/model_source.h"
#include "trainer/io/pth_writer.h"

namespace {

namespace fs = std::filesystem;
using rwkv::test::TempDir;

rwkv::io::ModelWeights random_weights(int64_t vocab, uint64_t seed) {
  rwkv::ModelConfig c;
  c.n_layer = 2;
  c.n_embd = 32;
  c.vocab_size = vocab;
  return {c, rwkv::test::random_model(c, seed)};
}

// Greedy continuation by the parallel forward over the whole text so far, one token at a time.
std::vector<int64_t> greedy_by_parallel_forward(rwkv::RWKV& model, std::vector<int64_t> text, int64_t n) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const torch::Tensor logits = model->forward(torch::tensor(text, torch::kLong).unsqueeze(0))[0][-1];
    out.push_back(logits.argmax().item<int64_t>());
    text.push_back(out.back());
  }
  return out;
}

std::string cli(const std::string& args, bool ok = true) {
  std::string out;
  const int rc = rwkv::test::run(rwkv::test::rwkv_binary().string() + " " + args, &out);
  INFO("rwkv " << args << "\n" << out);
  if (ok) REQUIRE(rc == 0);
  else REQUIRE(rc != 0);
  return out;
}

}  // namespace

TEST_CASE("greedy RNN-mode generation equals argmax of the parallel forward on the growing text", "[inference]") {
  // The briefly trained model: its greedy text varies (a random model tends to repeat one token).
  rwkv::RWKV model = rwkv::io::build_model(rwkv::io::read_model_source(rwkv::test::tiny_trained_run().checkpoint, {}).weights,
                                           torch::TensorOptions().dtype(torch::kFloat32));
  const std::vector<int64_t> prompt = {'t', 'h', 'e', ' '};
  const auto gen = rwkv::trainer::generate(model, prompt, 24, {.temperature = 0});
  CHECK(gen.tokens == greedy_by_parallel_forward(model, prompt, 24));
  CHECK(std::set<int64_t>(gen.tokens.begin(), gen.tokens.end()).size() > 3);  // not a constant run

  SECTION("a tiny top-p keeps only the most likely token: greedy at any temperature and seed") {
    for (const uint64_t seed : {1, 2}) {
      const auto nucleus = rwkv::trainer::generate(model, prompt, 24, {.temperature = 1.5, .top_p = 1e-6, .seed = seed});
      CHECK(nucleus.tokens == gen.tokens);
    }
  }
  SECTION("sampling is a function of the seed") {
    const rwkv::trainer::SamplingOptions o{.temperature = 1.0, .top_p = 0.95, .seed = 7};
    const auto a = rwkv::trainer::generate(model, prompt, 40, o);
    const auto b = rwkv::trainer::generate(model, prompt, 40, o);
    CHECK(a.tokens == b.tokens);
    const auto c = rwkv::trainer::generate(model, prompt, 40, {.temperature = 1.0, .top_p = 0.95, .seed = 8});
    CHECK(c.tokens != a.tokens);
  }
  SECTION("the state carried between tokens has a fixed size") {
    std::set<int64_t> sizes;
    rwkv::trainer::generate(model, prompt, 10, {.temperature = 0},
                            [&](const rwkv::trainer::GenerationProgress& p) { sizes.insert(rwkv::trainer::state_bytes(*p.state)); });
    // 5 vectors per layer: 2 of D in the model dtype, aa, bb, pp of A in fp32 (kernels/README.md "WKV").
    CHECK(sizes == std::set<int64_t>{2 * 5 * 32 * 4});
  }
}

TEST_CASE("top-p sampling draws only from the smallest set holding top_p of the mass", "[inference]") {
  // softmax of these logits: 0.4, 0.3, 0.2, 0.1 (ids 2, 0, 3, 1).
  const torch::Tensor logits = torch::log(torch::tensor({0.3, 0.1, 0.4, 0.2}));
  at::Generator g = at::detail::createCPUGenerator(11);
  std::map<int64_t, int> counts;
  for (int i = 0; i < 400; ++i) counts[rwkv::trainer::sample_token(logits, {.temperature = 1, .top_p = 0.65}, g)]++;
  // 0.4 < 0.65 ≤ 0.7: ids 2 and 0 stay, renormalised to 4/7 and 3/7.
  CHECK(counts.size() == 2);
  CHECK(counts[2] > 160);
  CHECK(counts[0] > 120);
  CHECK_THROWS_WITH(rwkv::trainer::sample_token(logits, {.top_p = 0}, g), Catch::Contains("--top-p"));
  CHECK_THROWS_WITH(rwkv::trainer::check_sampling_options({.temperature = -1}), Catch::Contains("--temperature"));
}

TEST_CASE("rwkv generate prints the greedy text with speeds and a flat memory table and rejects bad input",
          "[inference]") {
  TempDir dir("rwkv-generate");
  const auto weights = random_weights(256, 5);
  rwkv::io::write_pth(dir / "m.pth", weights.tensors, torch::kFloat32);
  rwkv::RWKV model = rwkv::io::build_model(weights, torch::TensorOptions().dtype(torch::kFloat32));
  const std::vector<int64_t> prompt = {'a', 'b', 'c'};
  const auto want = greedy_by_parallel_forward(model, prompt, 12);

  const std::string out = cli(fmt::format("generate {} --prompt abc --temperature 0 --max-tokens 12 --show-ids --tokenizer byte",
                                          (dir / "m.pth").string()));
  CHECK_THAT(out, Catch::Contains(fmt::format("ids: {}", fmt::join(want, " "))));
  CHECK_THAT(out, Catch::Contains("prefill: 3 tokens") && Catch::Contains("decode: 12 tokens") &&
                      Catch::Contains("tokens/s"));
  // The memory table: state bytes identical at every length.
  std::smatch m;
  std::set<std::string> state_sizes;
  int rows = 0;
  for (std::string rest = out; std::regex_search(rest, m, std::regex(R"(\n +(\d+) +(\d+) +[0-9.]+)")); rest = m.suffix()) {
    state_sizes.insert(m[2]);
    ++rows;
  }
  CHECK(rows == 4);
  CHECK(state_sizes == std::set<std::string>{std::to_string(2 * 5 * 32 * 4)});

  SECTION("the same weights as an HF folder generate the same text") {
    rwkv::io::write_hf_folder(dir / "hf", weights.tensors, weights.config, 64, torch::kFloat32);
    CHECK_THAT(cli(fmt::format("generate {} --prompt abc --temperature 0 --max-tokens 12 --show-ids --tokenizer byte",
                               (dir / "hf").string())),
               Catch::Contains(fmt::format("ids: {}", fmt::join(want, " "))));
  }
  SECTION("a trained checkpoint brings its own tokenizer") {
    const auto& tiny = rwkv::test::tiny_trained_run();
    CHECK_THAT(cli(fmt::format("generate {} --prompt 'the quick' --max-tokens 20 --seed 1", tiny.run_dir.string())),
               Catch::Contains("the quick") && Catch::Contains("tokenizer byte"));
  }
  SECTION("bad arguments") {
    CHECK_THAT(cli(fmt::format("generate {} --top-p 0", (dir / "m.pth").string()), false), Catch::Contains("--top-p"));
    CHECK_THAT(cli(fmt::format("generate {} --temperature -0.5", (dir / "m.pth").string()), false),
               Catch::Contains("--temperature"));
    CHECK_THAT(cli(fmt::format("generate {}", (dir / "missing.pth").string()), false), Catch::Contains("missing.pth"));
    // The byte tokenizer's 256 ids do not fit a 64-token vocabulary.
    rwkv::io::write_pth(dir / "small.pth", random_weights(64, 1).tensors, torch::kFloat32);
    CHECK_THAT(cli(fmt::format("generate {} --prompt x", (dir / "small.pth").string()), false),
               Catch::Contains("256 ids") && Catch::Contains("vocabulary of 64"));
  }
}

TEST_CASE("rwkv eval loss and perplexity and bits per byte and per-token log-probs match per-window forwards",
          "[inference]") {
  TempDir dir("rwkv-eval");
  const auto weights = random_weights(256, 9);
  rwkv::io::write_pth(dir / "m.pth", weights.tensors, torch::kFloat32);
  rwkv::RWKV model = rwkv::io::build_model(weights, torch::TensorOptions().dtype(torch::kFloat32));
  // Three documents ending in the EOD id 0 (which decodes to no text: 0 bytes); 41 tokens in all.
  std::vector<std::vector<int32_t>> docs = {{}, {}, {}};
  for (int i = 0; i < 38; ++i) docs[i % 3].push_back(32 + (i * 37) % 90);
  std::vector<int64_t> stream;
  {
    auto w = rwkv::data::make_token_writer(dir / "tok", rwkv::data::TokenFormat::binidx, 256);
    for (auto& d : docs) {
      d.push_back(0);
      w->add_document(d);
      stream.insert(stream.end(), d.begin(), d.end());
    }
    w->finish();
  }
  REQUIRE(stream.size() == 41);

  const std::string out = cli(fmt::format("eval {} --data {} --ctx-len 7 --batch 3 --tokenizer byte --dump-logprobs {}",
                                          (dir / "m.pth").string(), (dir / "tok").string(), (dir / "lp.jsonl").string()));
  // Reference: windows of 7 inputs from positions 0, 7, …, 35 (the last one 5 long), each run
  // alone through the parallel forward.
  std::vector<double> want(stream.size(), 0);
  {
    torch::NoGradGuard no_grad;
    for (size_t s = 0; s + 1 < stream.size(); s += 7) {
      const size_t len = std::min<size_t>(7, stream.size() - 1 - s);
      const std::vector<int64_t> in(stream.begin() + s, stream.begin() + s + len);
      const torch::Tensor lp = torch::log_softmax(model->forward(torch::tensor(in, torch::kLong).unsqueeze(0))[0], -1);
      for (size_t t = 0; t < len; ++t) want[s + t + 1] = lp[t][stream[s + t + 1]].item<double>();
    }
  }
  std::ifstream lines(dir / "lp.jsonl");
  std::string line;
  int64_t expected_pos = 1, bytes = 0;
  double nll = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    INFO(line);
    REQUIRE(j.at("pos") == expected_pos);
    CHECK(j.at("token") == stream[expected_pos]);
    CHECK(std::abs(j.at("logprob").get<double>() - want[expected_pos]) <= 1e-5);
    nll -= want[expected_pos];
    bytes += stream[expected_pos] != 0;
    ++expected_pos;
  }
  CHECK(expected_pos == 41);  // every token but the first, once
  const double loss = nll / 40;
  INFO(out);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(R"(positions (\d+) +loss ([0-9.]+) nats/token +perplexity ([0-9.]+) +)"
                                               R"(bits_per_byte ([0-9.]+) \((\d+) bytes\))")));
  CHECK(m[1] == "40");
  CHECK(std::stod(m[2]) == Approx(loss).epsilon(1e-5));
  CHECK(std::stod(m[3]) == Approx(std::exp(loss)).epsilon(1e-5));
  CHECK(std::stod(m[4]) == Approx(nll / std::log(2.0) / static_cast<double>(bytes)).epsilon(1e-5));
  CHECK(std::stoll(m[5]) == bytes);

  SECTION("windows run in segments (3 tokens, carrying the RNN state) predict the same log-probs") {
    cli(fmt::format("eval {} --data {} --ctx-len 7 --batch 3 --segment-len 3 --tokenizer byte --dump-logprobs {}",
                    (dir / "m.pth").string(), (dir / "tok").string(), (dir / "lp3.jsonl").string()));
    std::ifstream seg_lines(dir / "lp3.jsonl");
    int64_t n = 0;
    while (std::getline(seg_lines, line)) {
      const auto j = nlohmann::json::parse(line);
      INFO(line);
      CHECK(std::abs(j.at("logprob").get<double>() - want[j.at("pos").get<size_t>()]) <= 1e-5);
      ++n;
    }
    CHECK(n == 40);
  }
  SECTION("a .txt file gives what its byte-tokenized binidx gives") {
    const auto& tiny = rwkv::test::tiny_trained_run();
    const auto grab = [](const std::string& s) {
      std::smatch m;
      REQUIRE(std::regex_search(s, m, std::regex(R"(positions .*)")));
      return m.str();
    };
    const std::string a = cli(fmt::format("eval {} --data {} --max-tokens 500", tiny.checkpoint.string(), tiny.text.string()));
    // prep wrote the same bytes plus one EOD (0 bytes): the first 500 tokens are identical.
    const std::string b = cli(fmt::format("eval {} --data {} --max-tokens 500", tiny.checkpoint.string(), tiny.tokens.string()));
    CHECK(grab(a) == grab(b));
    CHECK_THAT(a, Catch::Contains("ctx_len 16"));  // the checkpoint's own
  }
  SECTION("bad input: missing data, a one-token stream, an unwritable dump; nothing left behind") {
    CHECK_THAT(cli(fmt::format("eval {} --data {}", (dir / "m.pth").string(), (dir / "nope.h5").string()), false),
               Catch::Contains("nope.h5"));
    std::ofstream(dir / "one.txt") << "x";
    CHECK_THAT(cli(fmt::format("eval {} --data {} --tokenizer byte", (dir / "m.pth").string(), (dir / "one.txt").string()), false),
               Catch::Contains("one.txt") && Catch::Contains("need at least 2"));
    std::ofstream(dir / "old.jsonl") << "keep me\n";
    cli(fmt::format("eval {} --data {} --tokenizer byte --dump-logprobs {}", (dir / "m.pth").string(),
                    (dir / "one.txt").string(), (dir / "old.jsonl").string()), false);
    std::ifstream old(dir / "old.jsonl");
    std::stringstream kept;
    kept << old.rdbuf();
    CHECK(kept.str() == "keep me\n");
  }
}
