// [model] The reference key layout (rwkv/README.md "Forward pass") and its transformers names.
#include <algorithm>
#include <functional>
#include <set>

#include "rwkv/hf_naming.h"
#include "rwkv/reference_layout.h"
#include "tests/support/test_util.h"

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("reference layout: key count and parameter count match rwkv/README.md 'Shapes'", "[model]") {
  rwkv::ModelConfig c;
  c.n_layer = 12;
  c.n_embd = 768;
  c.vocab_size = 50277;
  const auto layout = rwkv::reference_layout(c);
  // emb, ln_out pair, head; ln0 pair; per block 4 layer-norm, 9 att and 5 ffn tensors.
  CHECK(layout.size() == 4 + 2 + 18 * 12);
  int64_t params = 0;
  std::set<std::string> names;
  for (const auto& t : layout) {
    int64_t n = 1;
    for (const int64_t d : t.shape) n *= d;
    params += n;
    names.insert(t.name);
  }
  CHECK(names.size() == layout.size());
  CHECK(params == 169342464);  // the 169M row: 2VD + 13D²L + D(11L+4)
  CHECK(rwkv::infer_model_config(layout, "x").n_layer == 12);
  CHECK(rwkv::infer_model_config(layout, "x").ffn() == 4 * 768);
}

TEST_CASE("hf naming: every reference key maps to transformers' name and back", "[model]") {
  rwkv::ModelConfig c;
  c.n_layer = 11;
  c.n_embd = 8;
  c.vocab_size = 5;
  std::set<std::string> hf;
  for (const auto& t : rwkv::reference_layout(c)) {
    const std::string h = rwkv::reference_to_hf_name(t.name);
    CHECK(rwkv::hf_to_reference_name(h) == t.name);
    hf.insert(h);
  }
  CHECK(hf.size() == rwkv::reference_layout(c).size());
  CHECK(rwkv::reference_to_hf_name("blocks.0.ln0.bias") == "rwkv.blocks.0.pre_ln.bias");
  CHECK(rwkv::reference_to_hf_name("blocks.10.att.time_mix_v") == "rwkv.blocks.10.attention.time_mix_value");
  CHECK(rwkv::reference_to_hf_name("blocks.3.ffn.time_mix_r") == "rwkv.blocks.3.feed_forward.time_mix_receptance");
  CHECK(rwkv::reference_to_hf_name("emb.weight") == "rwkv.embeddings.weight");
  CHECK(rwkv::reference_to_hf_name("head.weight") == "head.weight");
  CHECK_THAT(error_of([] { rwkv::reference_to_hf_name("blocks.x.ln1.weight"); }), Catch::Contains("blocks.x.ln1.weight"));
  CHECK_THAT(error_of([] { rwkv::hf_to_reference_name("rwkv.blocks.0.attention.time_mix_k"); }),
             Catch::Contains("not an RWKV-4 transformers weight name"));
}

TEST_CASE("reference layout: mismatches name the tensor and the expected shape", "[model]") {
  rwkv::ModelConfig c;
  c.n_layer = 2;
  c.n_embd = 8;
  c.vocab_size = 10;
  auto layout = rwkv::reference_layout(c);
  CHECK_NOTHROW(rwkv::check_reference_layout(layout, c, "file.pth"));
  for (auto& t : layout)
    if (t.name == "blocks.1.att.time_mix_k") t.shape = {8};  // squeezed, as some converters leave it
  layout.erase(std::find_if(layout.begin(), layout.end(), [](auto& t) { return t.name == "head.weight"; }));
  layout.push_back({"blocks.1.att.extra", {8}});
  const std::string e = error_of([&] { rwkv::check_reference_layout(layout, c, "file.pth"); });
  CHECK_THAT(e, Catch::Contains("file.pth") && Catch::Contains("'blocks.1.att.time_mix_k' has shape (8), expected (1, 1, 8)") &&
                    Catch::Contains("missing tensor(s): 'head.weight'") && Catch::Contains("'blocks.1.att.extra'"));
  CHECK_THAT(error_of([] { rwkv::infer_model_config({{"head.weight", {3, 4}}}, "f.pth"); }),
             Catch::Contains("'emb.weight' is missing"));
}
