// Held-out validation (trainer/train/validation.h): the windows each rank scores, the loop's
// cadence and records, figures equal to evaluate() and `rwkv eval` of the saved weights, the
// stage table, consistency across a resume, a split the training order never draws from, and
// the errors for held-out data that cannot be used.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "data/binidx.h"
#include "data/magic_prime_sampler.h"
#include "data/token_range.h"
#include "data/tokenizer.h"
#include "tests/support/test_trainer_fixtures.h"
#include "tests/support/test_util.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config/yaml_section.h"
#include "trainer/dist/communicator.h"
#include "trainer/train/dataset_source.h"
#include "trainer/train/trained_model.h"
#include "trainer/train/validation.h"

using namespace rwkv::trainer;
namespace fs = std::filesystem;
namespace tt = rwkv::test::trainer;

namespace {

// `tokens` as a one-document binidx at `prefix`.
std::shared_ptr<const rwkv::data::TokenDataset> write_tokens(const fs::path& prefix, const std::vector<int32_t>& tokens,
                                                             int64_t vocab) {
  rwkv::data::BinIdxWriter w(prefix, rwkv::data::binidx_dtype_for_vocab(vocab));
  w.add_document(tokens);
  w.finish();
  return rwkv::data::open_token_dataset(prefix);
}

// 301 held-out tokens of the trainer tests' Markov source (V = 16), which the model learns.
std::shared_ptr<const rwkv::data::TokenDataset> markov_held_out(const fs::path& prefix) {
  const torch::Tensor t = tt::MarkovSource(16, 3, 300).samples(1000, 1)[0];
  std::vector<int32_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  return write_tokens(prefix, ids, 16);
}

// Two stages (ctx 8 for 7 steps, ctx 16 for 5), validation every 3 steps in batches of 4 windows.
RunConfig staged_config(const std::string& run_dir) {
  return parse_run_config(tt::config_yaml(run_dir) + R"(validation: {path: held, every_steps: 3, batch: 4}
stages:
  - {ctx_len: 8, steps: 7}
  - {ctx_len: 16, micro_batch: 2, steps: 5}
)",
                          "test.yaml");
}

// The RWKV env of the trainer tests, validating on `held` with `rwkv::trainer::Validation`.
TrainEnv validating_env(const RunConfig& cfg, std::shared_ptr<const rwkv::data::TokenDataset> held) {
  TrainEnv env = tt::make_rwkv_env(cfg);
  rwkv::RWKV model(std::dynamic_pointer_cast<rwkv::RWKVImpl>(env.model));
  const auto bytes = token_byte_lengths(*rwkv::data::make_byte_tokenizer(), cfg.model.vocab_size);
  auto v = std::make_shared<Validation>(held, bytes, cfg.validation.batch);
  env.validate = [v, model](int64_t ctx_len, rwkv::Communicator& comm) mutable { return v->run(model, ctx_len, comm); };
  return env;
}

std::vector<std::string> validation_lines(const fs::path& metrics) {
  std::vector<std::string> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);)
    if (line.find("\"val_loss\"") != std::string::npos) out.push_back(line);
  return out;
}

// evaluate() of the newest checkpoint's weights, on one process, at `ctx_len`.
EvalResult evaluate_checkpoint(const RunConfig& cfg, const rwkv::data::TokenDataset& held, int64_t ctx_len) {
  TrainedModel m = build_trained_model(cfg, torch::kCPU);
  const auto ck = load_checkpoint(list_checkpoints(cfg.checkpoint.dir).back(), CheckpointParts::weights);
  rwkv::load_weights(rwkv::named_parameters(*m.model), ck.weights, "checkpoint");
  const auto bytes = token_byte_lengths(*rwkv::data::make_byte_tokenizer(), cfg.model.vocab_size);
  return evaluate(m.model, held, bytes, {.ctx_len = ctx_len, .batch = cfg.validation.batch});
}

}  // namespace

TEST_CASE("validation shares: whole batches per rank, every window of one rank's evaluation once, in order", "[train]") {
  for (int64_t n : {2, 3, 17, 100, 129, 1001})
    for (int64_t ctx : {1, 4, 16})
      for (int64_t batch : {1, 3, 8}) {
        // The windows evaluate() cuts a stream of n tokens into: (start, inputs).
        const auto windows_of = [ctx](int64_t begin, int64_t end) {
          std::vector<std::pair<int64_t, int64_t>> w;
          for (int64_t s = begin; s < end - 1; s += ctx) w.emplace_back(s, std::min(ctx, end - 1 - s));
          return w;
        };
        const auto whole = windows_of(0, n);
        for (int world = 1; world <= 5; ++world) {
          INFO("n " << n << " ctx " << ctx << " batch " << batch << " world " << world);
          std::vector<std::pair<int64_t, int64_t>> joined;
          for (int r = 0; r < world; ++r) {
            const TokenShare s = validation_share(n, ctx, batch, r, world);
            if (s.end == s.begin) continue;
            const auto mine = windows_of(s.begin, s.end);
            if (s.end < n) REQUIRE(mine.size() % static_cast<size_t>(batch) == 0);  // whole batches but the last
            joined.insert(joined.end(), mine.begin(), mine.end());
          }
          REQUIRE(joined == whole);
        }
      }
  REQUIRE_THROWS_AS(validation_share(1, 4, 1, 0, 1), std::invalid_argument);
  REQUIRE_THROWS_AS(validation_share(10, 4, 1, 2, 2), std::invalid_argument);
}

TEST_CASE("a token range reads, counts and describes its part of the stream", "[data]") {
  rwkv::test::TempDir dir("rwkv-token-range");
  rwkv::data::BinIdxWriter w(dir / "docs", rwkv::data::BinIdxDType::i32);
  std::vector<int32_t> doc;
  for (int d = 0; d < 4; ++d) {  // documents of 10, 20, 30, 40 tokens; token value = position
    doc.resize(static_cast<size_t>(10 * (d + 1)));
    for (auto& t : doc) t = static_cast<int32_t>(&t - doc.data()) + 10 * d * (d + 1) / 2;
    w.add_document(doc);
  }
  w.finish();
  std::shared_ptr<const rwkv::data::TokenDataset> base = rwkv::data::open_token_dataset(dir / "docs");
  const rwkv::data::TokenRange r(base, 25, 65);  // the end of document 1, document 2 whole, the start of 3
  REQUIRE(r.size() == 40);
  std::vector<int64_t> got(40);
  r.read(0, 40, got.data());
  for (int64_t i = 0; i < 40; ++i) REQUIRE(got[static_cast<size_t>(i)] == 25 + i);
  REQUIRE(r.num_documents() == 3);
  CHECK(r.document_offset(0) == 0);
  CHECK(r.document_offset(1) == 5);   // document 2 starts at 30
  CHECK(r.document_offset(2) == 35);  // document 3 at 60
  CHECK(r.document_offset(3) == 40);
  CHECK_THAT(r.describe(), Catch::Contains("tokens [25, 65) of"));
  REQUIRE_THROWS_AS(r.read(30, 11, got.data()), std::out_of_range);
  REQUIRE_THROWS_AS(rwkv::data::TokenRange(base, 50, 101), std::out_of_range);
}

TEST_CASE("the loop validates every every_steps and at each stage's end; figures are evaluate()'s of the weights",
          "[train]") {
  tt::OneThread one;
  rwkv::test::TempDir dir("rwkv-validation");
  const auto held = markov_held_out(dir / "held");
  const RunConfig cfg = staged_config((dir / "run").string());
  TrainEnv env = validating_env(cfg, held);
  std::vector<std::string> printed;
  TrainControls c;
  c.print = [&printed](const std::string& s) { printed.push_back(s); };
  REQUIRE(run_training(cfg, env, c).exit == TrainExit::finished);

  const auto records = read_validation_records(dir / "run" / "metrics.jsonl");
  std::vector<std::pair<int64_t, int64_t>> when;  // (step, ctx_len)
  for (const auto& v : records) when.emplace_back(v.step, v.ctx_len);
  // Every 3 steps, and at the ends of the stages (7 and 12).
  REQUIRE(when == std::vector<std::pair<int64_t, int64_t>>{{3, 8}, {6, 8}, {7, 8}, {9, 16}, {12, 16}});
  for (const auto& v : records) {
    INFO("step " << v.step);
    // Every held-out token but the first is scored once; its figures are consistent.
    CHECK(v.tokens == held->size() - 1);
    CHECK(v.perplexity == Approx(std::exp(v.loss)).epsilon(1e-12));
    CHECK(v.stage == (v.step <= 7 ? 0 : 1));
    CHECK(std::isfinite(v.bits_per_byte));
  }
  CHECK(std::count_if(printed.begin(), printed.end(), [](const std::string& s) {
          return s.find("| validation ctx_len 16 | loss") != std::string::npos;
        }) == 2);
  // The model learns the source: the held-out loss falls (from ~ln 16 towards ln 3).
  CHECK(records.back().loss < records.front().loss - 0.1);
  // The same records go to TensorBoard (tag names are plain bytes in its events file).
  std::string events;
  for (const auto& e : fs::directory_iterator(dir / "run" / "tb")) events += rwkv::test::slurp(e.path());
  for (const char* tag : {"val_loss", "val_perplexity", "val_bits_per_byte", "val_ctx_len", "val_tokens"})
    CHECK(events.find(tag) != std::string::npos);

  // The last figure is evaluate() of the saved final weights, run apart from the loop.
  const EvalResult at16 = evaluate_checkpoint(cfg, *held, 16), at8 = evaluate_checkpoint(cfg, *held, 8);
  CHECK(records.back().loss == at16.loss());
  CHECK(records.back().bits_per_byte == at16.bits_per_byte());
  CHECK(records.back().tokens == at16.positions);

  // The table: each stage's last validation and the final model at that ctx_len.
  std::istringstream table(rwkv::test::slurp(dir / "run" / "validation_by_ctx.tsv"));
  std::string header, row0, row1, extra;
  std::getline(table, header);
  std::getline(table, row0);
  std::getline(table, row1);
  CHECK_FALSE(std::getline(table, extra));
  CHECK(header == "stage\tctx_len\tstep\tloss\tperplexity\tbits_per_byte\tfinal_loss\tfinal_perplexity\tfinal_bits_per_byte");
  const auto field = [](const std::string& row, int i) {
    std::istringstream s(row);
    std::string f;
    for (int k = 0; k <= i; ++k) std::getline(s, f, '\t');
    return f;
  };
  CHECK(field(row0, 0) == "0");
  CHECK(field(row0, 1) == "8");
  CHECK(field(row0, 2) == "7");
  CHECK(std::stod(field(row0, 3)) == Approx(records[2].loss).margin(1e-6));
  CHECK(std::stod(field(row0, 6)) == Approx(at8.loss()).margin(1e-6));
  CHECK(field(row1, 1) == "16");
  CHECK(field(row1, 2) == "12");
  CHECK(std::stod(field(row1, 3)) == Approx(at16.loss()).margin(1e-6));
  CHECK(std::stod(field(row1, 6)) == Approx(at16.loss()).margin(1e-6));
}

TEST_CASE("a resumed run logs the same validation figures and table as an uninterrupted one", "[train]") {
  tt::OneThread one;
  rwkv::test::TempDir dir("rwkv-validation-resume");
  const auto held = markov_held_out(dir / "held");
  const RunConfig full = staged_config((dir / "full").string());
  TrainEnv env = validating_env(full, held);
  REQUIRE(run_training(full, env, tt::quiet()).exit == TrainExit::finished);

  // Stopped before step 5 (stage 0) and before step 10 (stage 1), each time a new process.
  const RunConfig cut = staged_config((dir / "cut").string());
  for (int64_t stop_at : {4, 9, -1}) {
    TrainEnv e = validating_env(cut, held);
    TrainControls c = tt::quiet();
    c.stop_before = [stop_at](const TrainProgress& p, int64_t) { return p.step == stop_at; };
    const auto r = run_training(cut, e, c);
    REQUIRE(r.exit == (stop_at < 0 ? TrainExit::finished : TrainExit::stopped));
  }
  const auto want = validation_lines(dir / "full" / "metrics.jsonl");
  REQUIRE(want.size() == 5);
  CHECK(validation_lines(dir / "cut" / "metrics.jsonl") == want);  // bit-exact on the CPU
  CHECK(rwkv::test::slurp(dir / "cut" / "validation_by_ctx.tsv") == rwkv::test::slurp(dir / "full" / "validation_by_ctx.tsv"));
}

TEST_CASE("over a whole pass of the sampler no training sample holds a token of the validation split", "[train]") {
  // Token value = its position, so a sample's tokens say where it was read.
  rwkv::test::TempDir dir("rwkv-split");
  const int64_t n = 40000, split = 3001, ctx = 16;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const auto data = write_tokens(dir / "pos", ids, n);
  for (const std::string sampler : {"magic_prime", "random"}) {
    INFO(sampler);
    const RunConfig cfg = parse_run_config(fmt::format(R"(model: {{n_layer: 1, n_embd: 32, vocab_size: {}}}
data: {{path: pos, ctx_len: {}, sampler: {}}}
train: {{run_dir: r, micro_batch: 4, epoch_samples: 40, epoch_count: 1}}
optimizer: {{lr_init: 1.0e-3}}
validation: {{split_tokens: {}}}
)",
                                                       n, ctx, sampler, split),
                                           "split.yaml");
    const auto source = make_dataset_source(data, cfg, cfg.stages[0]);
    const rwkv::data::MagicPrimeSampler order(n, ctx, split);
    const int64_t pass = static_cast<int64_t>(order.pass_length());
    const torch::Tensor samples = source->samples(0, pass);
    REQUIRE(samples.max().item<int64_t>() < n - split);  // the split's first token is n − split
    const torch::Tensor starts = samples.select(1, 0).contiguous();
    REQUIRE(((samples - starts.unsqueeze(1)) == torch::arange(ctx + 1)).all().item<bool>());  // windows of the file
    if (sampler == "magic_prime") {
      // Every window before the split once: the whole file's chunks minus those reaching into it.
      const std::set<int64_t> seen(starts.data_ptr<int64_t>(), starts.data_ptr<int64_t>() + pass);
      REQUIRE(static_cast<int64_t>(seen.size()) == pass);
      REQUIRE(pass == (n - split - 1) / ctx);
      REQUIRE(*seen.rbegin() == (pass - 1) * ctx);
    }
    // The held-out data is exactly the split.
    const auto held = open_validation_data(cfg, data, *rwkv::data::make_byte_tokenizer());
    REQUIRE(held->size() == split);
    int64_t first = 0;
    held->read(0, 1, &first);
    REQUIRE(first == n - split);
  }
}

TEST_CASE("held-out data that cannot serve is refused naming the field", "[train]") {
  rwkv::test::TempDir dir("rwkv-held-bad");
  std::vector<int32_t> ids(1000, 5);
  const auto data = write_tokens(dir / "tok", ids, 256);
  const auto tok = rwkv::data::make_byte_tokenizer();
  const auto error_for = [&](const std::string& validation, const std::string& stages = "") {
    try {
      const RunConfig cfg = parse_run_config(R"(model: {n_layer: 1, n_embd: 32, vocab_size: 16}
data: {path: tok, ctx_len: 16}
train: {run_dir: r, micro_batch: 4, epoch_samples: 40, epoch_count: 1}
optimizer: {lr_init: 1.0e-3}
validation: )" + validation + "\n" + stages,
                                             "bad.yaml");
      open_validation_data(cfg, data, *tok);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK_THAT(error_for("{split_tokens: 1000}"),
             Catch::Contains("bad.yaml: validation.split_tokens: 1000 is not less than the 1000 tokens of data.path"));
  CHECK_THAT(error_for("{split_tokens: 990}"),
             Catch::Contains("validation.split_tokens: holding out 990 of the 1000 tokens of data.path leaves 10, fewer "
                             "than one training window of ctx_len + 1 = 17 tokens"));
  CHECK_THAT(error_for("{split_tokens: 900}", "stages:\n  - {ctx_len: 16, steps: 1}\n  - {ctx_len: 128, steps: 1}\n"),
             Catch::Contains("leaves 100, fewer than one training window of stage 1's ctx_len + 1 = 129"));
  CHECK_THAT(error_for("{split_tokens: 1}"),
             Catch::Contains("validation.split_tokens: the held-out data tokens [999, 1000) of") &&
                 Catch::Contains("holds 1 token(s); validation needs at least 2"));
  CHECK_THAT(error_for("{path: " + (dir / "missing").string() + "}"), Catch::Contains((dir / "missing").string()));
  // A held-out file of a larger vocabulary: ids the model cannot embed.
  std::vector<int32_t> big{1, 2, 300, 4};
  write_tokens(dir / "big", big, 1000);
  CHECK_THAT(error_for("{path: " + (dir / "big").string() + "}"),
             Catch::Contains("token id 300 at position 2") && Catch::Contains("model.vocab_size is 16"));
  CHECK(error_for("{split_tokens: 100, max_tokens: 50}") == "(no error)");
}

TEST_CASE("rwkv train's validation of a split equals rwkv eval of its checkpoint on the held-out file", "[train]") {
  // The training file is A then B (one document: A B EOD); B alone (B EOD) is the held-out file,
  // so validation.split_tokens = |B| + 1 holds out exactly the tokens `rwkv eval` reads from it.
  rwkv::test::TempDir dir("rwkv-validation-cli");
  std::string a, b;
  for (int i = 0; i < 200; ++i) a += fmt::format("the quick brown fox {} jumps over the lazy dog.\n", i % 13);
  for (int i = 0; i < 20; ++i) b += fmt::format("a lazy dog {} sleeps under the quick brown fox.\n", i % 7);
  fs::create_directories(dir / "all");
  fs::create_directories(dir / "held");
  std::ofstream(dir / "all" / "ab.txt") << a << b;
  std::ofstream(dir / "held" / "b.txt") << b;
  const std::string bin = rwkv::test::rwkv_binary().string();
  for (const char* name : {"all", "held"}) {
    std::string out;
    INFO(out);
    REQUIRE(rwkv::test::run(fmt::format("{} prep {} -o {} --tokenizer byte --quiet", bin, (dir / name).string(),
                                        (dir / (std::string(name) + "_tok")).string()),
                            &out) == 0);
  }
  std::ofstream(dir / "run.yaml") << fmt::format(R"(model: {{n_layer: 2, n_embd: 32, vocab_size: 256}}
data: {{path: "{}", ctx_len: 16}}
train: {{run_dir: "{}", micro_batch: 4, epoch_samples: 40, epoch_count: 3, max_steps: 12, device: cpu, threads: 1}}
optimizer: {{lr_init: 3.0e-3, lr_final: 1.0e-3, warmup_steps: 2}}
checkpoint: {{every_steps: 1000}}
validation: {{split_tokens: {}, every_steps: 6, batch: 4}}
)",
                                                 (dir / "all_tok").string(), (dir / "run").string(), b.size() + 1);
  std::string out;
  const int rc = rwkv::test::run(fmt::format("{} train {}", bin, (dir / "run.yaml").string()), &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains(fmt::format("validation: tokens [{}, ", a.size())));
  CHECK_THAT(out, Catch::Contains("step      12 | validation ctx_len 16 | loss"));
  const auto records = read_validation_records(dir / "run" / "metrics.jsonl");
  REQUIRE(records.size() == 2);
  REQUIRE(records.back().step == 12);

  const int eval_rc = rwkv::test::run(fmt::format("{} eval {} --data {} --ctx-len 16 --batch 4 --dump-logprobs {}", bin,
                                                  (dir / "run").string(), (dir / "held_tok").string(),
                                                  (dir / "lp.jsonl").string()),
                                      &out);
  INFO(out);
  REQUIRE(eval_rc == 0);
  double nll = 0;
  int64_t positions = 0;
  std::ifstream lp(dir / "lp.jsonl");
  for (std::string line; std::getline(lp, line); ++positions) nll -= nlohmann::json::parse(line).at("logprob").get<double>();
  REQUIRE(positions == static_cast<int64_t>(b.size()));
  CHECK(records.back().tokens == positions);
  CHECK(records.back().loss == Approx(nll / static_cast<double>(positions)).epsilon(1e-12));
  CHECK_THAT(out, Catch::Contains(fmt::format("loss {:.6f} nats/token", records.back().loss)));
  CHECK_THAT(out, Catch::Contains(fmt::format("bits_per_byte {:.6f}", records.back().bits_per_byte)));

  // A split larger than the file is refused before the run directory exists.
  const int bad = rwkv::test::run(fmt::format("{} train {} --set validation.split_tokens={} --set train.run_dir={}", bin,
                                              (dir / "run.yaml").string(), a.size() + b.size() + 1,
                                              (dir / "never").string()),
                                  &out);
  CHECK(bad != 0);
  CHECK_THAT(out, Catch::Contains("validation.split_tokens: " + std::to_string(a.size() + b.size() + 1) +
                                  " is not less than the"));
  CHECK_FALSE(fs::exists(dir / "never"));
}
