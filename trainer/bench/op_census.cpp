#include "trainer/bench/op_census.h"

#include <ATen/record_function.h>

#include <fmt/format.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <vector>

#include "rwkv/block.h"

namespace rwkv::bench {
namespace {

bool is_gemm(const std::string& name) {
  static const std::set<std::string> gemms = {"aten::mm",     "aten::addmm", "aten::bmm",   "aten::baddbmm",
                                              "aten::addbmm", "aten::mv",    "aten::addmv", "aten::dot",
                                              "aten::_addmm_activation"};
  return gemms.count(name) > 0;
}

// Operators that run no kernel although their schema does not say so: allocations of
// uninitialised memory, a view whose schema hides its alias, a dtype computation.
bool runs_no_kernel(const std::string& name) {
  static const std::set<std::string> names = {"aten::empty",         "aten::empty_strided",     "aten::empty_like",
                                              "aten::new_empty",     "aten::new_empty_strided", "aten::resize_",
                                              "aten::_unsafe_view",  "aten::result_type"};
  return names.count(name) > 0;
}

// Operators counted as one launch whatever their CPU implementation calls inside: ATen's CPU
// LayerNorm backward zero-fills its parameter gradients through a nested zero_ (CUDA's does not),
// which would otherwise be counted in its place and hide the op itself.
bool counts_as_one(const std::string& name) { return name == "aten::native_layer_norm_backward"; }

// Operators (with a schema) and the project's kernels, not the other RecordFunction ranges of
// FUNCTION scope that LibTorch opens (its autograd's "detach", for one).
bool is_operator(const at::RecordFunction& fn) {
  return fn.operator_name().has_value() || std::string(fn.name()).rfind("rwkv::", 0) == 0;
}

// A view: every result aliases an input and none is written (the schema's `Tensor(a)` returns).
bool is_view(const at::RecordFunction& fn) {
  const std::optional<c10::FunctionSchema> schema = fn.operator_schema();
  if (!schema || schema->returns().empty()) return false;
  for (const c10::Argument& r : schema->returns())
    if (r.alias_info() == nullptr || r.alias_info()->isWrite()) return false;
  return true;
}

void add_tensor_bytes(const c10::IValue& v, std::vector<const c10::TensorImpl*>& seen, int64_t& bytes) {
  const auto add = [&](const at::Tensor& t) {
    if (!t.defined()) return;
    const c10::TensorImpl* impl = t.unsafeGetTensorImpl();
    for (const auto* s : seen)
      if (s == impl) return;
    seen.push_back(impl);
    bytes += static_cast<int64_t>(t.numel() * t.element_size());
  };
  if (v.isTensor()) {
    add(v.toTensor());
  } else if (v.isList()) {
    for (const c10::IValue& e : v.toListRef())
      if (e.isTensor()) add(e.toTensor());
  }
}

// The recorder's tallies; one recorder at a time (the callbacks are plain functions).
std::atomic<OpCensusRecorder::Shared*> g_shared{nullptr};

// One operator in progress on this thread; `launched_below` is set when a nested one launched.
// Its inputs are read at the start: the dispatcher's boxed inputs live only during the start
// callback, while the outputs are kept for the end callback.
struct Frame : at::ObserverContext {
  Frame* parent = nullptr;
  bool launched_below = false;
  bool inside_one = false;  // below an operator that counts_as_one: not counted
  std::string name;
  std::vector<const c10::TensorImpl*> seen;
  int64_t bytes = 0;
};
thread_local Frame* t_top = nullptr;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (fn.scope() != at::RecordScope::FUNCTION || !is_operator(fn)) return nullptr;
  auto frame = std::make_unique<Frame>();
  for (const c10::IValue& v : fn.inputs()) add_tensor_bytes(v, frame->seen, frame->bytes);
  frame->parent = t_top;
  frame->inside_one = t_top != nullptr && (t_top->inside_one || counts_as_one(t_top->name));
  frame->name = fn.name();
  t_top = frame.get();
  return frame;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  if (ctx == nullptr) return;
  auto* frame = static_cast<Frame*>(ctx);
  t_top = frame->parent;
  const std::string name = fn.name();
  const bool launch = !frame->inside_one && (counts_as_one(name) || !frame->launched_below) && !runs_no_kernel(name) &&
                      !is_view(fn);
  if (frame->parent != nullptr && (launch || frame->launched_below)) frame->parent->launched_below = true;
  OpCensusRecorder::Shared* shared = g_shared.load();
  if (!launch || shared == nullptr) return;
  for (const c10::IValue& v : fn.outputs()) add_tensor_bytes(v, frame->seen, frame->bytes);
  const std::lock_guard<std::mutex> lock(shared->mutex);
  OpTally& t = shared->census.by_op[name];
  t.launches += 1;
  t.bytes += frame->bytes;
}

OpTally sum_if(const OpCensus& c, bool gemm) {
  OpTally t;
  for (const auto& [name, n] : c.by_op)
    if (is_gemm(name) == gemm) {
      t.launches += n.launches;
      t.bytes += n.bytes;
    }
  return t;
}

}  // namespace

OpTally OpCensus::total() const {
  OpTally g = gemm(), o = other();
  return OpTally{g.launches + o.launches, g.bytes + o.bytes};
}
OpTally OpCensus::gemm() const { return sum_if(*this, true); }
OpTally OpCensus::other() const { return sum_if(*this, false); }

OpCensusRecorder::OpCensusRecorder() : shared_(std::make_shared<Shared>()) {
  Shared* expected = nullptr;
  if (!g_shared.compare_exchange_strong(expected, shared_.get()))
    throw std::logic_error("OpCensusRecorder: another recorder is active");
  handle_ = at::addGlobalCallback(at::RecordFunctionCallback(on_start, on_end)
                                      .needsInputs(true)
                                      .needsOutputs(true)
                                      .scopes({at::RecordScope::FUNCTION}));
}

OpCensusRecorder::~OpCensusRecorder() {
  at::removeCallback(handle_);
  g_shared.store(nullptr);
}

OpCensus OpCensusRecorder::take() {
  const std::lock_guard<std::mutex> lock(shared_->mutex);
  OpCensus out = std::move(shared_->census);
  shared_->census = OpCensus{};
  return out;
}

BlockCensus census_block(const ModelConfig& config, int64_t B, int64_t T, torch::ScalarType dtype) {
  torch::manual_seed(0);
  const auto options = torch::TensorOptions().dtype(dtype);
  Block block(config, /*layer_id=*/1, options);
  {
    const torch::NoGradGuard no_grad;
    for (auto& p : block->parameters()) p.normal_(0.0, 0.1);
  }
  const torch::Tensor x = torch::randn({B, T, config.n_embd}, options).requires_grad_(true);
  const torch::Tensor gy = torch::randn({B, T, config.n_embd}, options);
  BlockCensus out;
  OpCensusRecorder recorder;
  const torch::Tensor y = block->forward(x);
  out.forward = recorder.take();
  y.backward(gy);
  out.backward = recorder.take();
  return out;
}

namespace {

nlohmann::json pass_json(const OpCensus& c, int64_t tokens, int64_t D) {
  nlohmann::json by_op = nlohmann::json::object();
  for (const auto& [name, t] : c.by_op) by_op[name] = {{"launches", t.launches}, {"bytes", t.bytes}};
  const auto per_token = [&](int64_t bytes) { return static_cast<double>(bytes) / static_cast<double>(tokens); };
  return {{"launches", c.total().launches},
          {"gemm_launches", c.gemm().launches},
          {"bytes_per_token", per_token(c.total().bytes)},
          {"gemm_bytes_per_token", per_token(c.gemm().bytes)},
          {"other_bytes_per_token", per_token(c.other().bytes)},
          {"other_bytes_per_token_per_d", per_token(c.other().bytes) / static_cast<double>(D)},
          {"by_op", by_op}};
}

}  // namespace

nlohmann::json report_block_census(const ModelConfig& config, int64_t B, int64_t T) {
  const int64_t D = config.n_embd, tokens = B * T;
  const BlockCensus fp32 = census_block(config, B, T, torch::kFloat32);
  const BlockCensus bf16 = census_block(config, B, T, torch::kBFloat16);
  const OpCensus* passes[4] = {&fp32.forward, &fp32.backward, &bf16.forward, &bf16.backward};
  fmt::print("kernel census of one block (layer 1, B={} T={} D={}, counted on the CPU; trainer/bench/op_census.h)\n", B,
             T, D);
  fmt::print("  {:<36} {:>9} {:>9} {:>9} {:>9}\n", "", "fp32 fwd", "bwd", "bf16 fwd", "bwd");
  const auto row = [&](const char* label, const auto& value, const char* spec) {
    fmt::print("  {:<36}", label);
    for (const OpCensus* c : passes) fmt::print(fmt::runtime(spec), value(*c));
    fmt::print("\n");
  };
  const auto per_token = [&](int64_t bytes) { return static_cast<double>(bytes) / static_cast<double>(tokens); };
  row("launches", [](const OpCensus& c) { return c.total().launches; }, " {:9d}");
  row("  of which GEMMs", [](const OpCensus& c) { return c.gemm().launches; }, " {:9d}");
  row("bytes/token", [&](const OpCensus& c) { return per_token(c.total().bytes); }, " {:9.0f}");
  row("non-GEMM bytes/token, in units of D", [&](const OpCensus& c) { return per_token(c.other().bytes) / D; },
      " {:9.1f}");
  fmt::print("  launches by operator:\n");
  std::set<std::string> names;
  for (const OpCensus* c : passes)
    for (const auto& [name, t] : c->by_op) names.insert(name);
  for (const std::string& name : names) {
    fmt::print("    {:<34}", name);
    for (const OpCensus* c : passes) {
      const auto it = c->by_op.find(name);
      fmt::print(" {:9d}", it == c->by_op.end() ? 0 : it->second.launches);
    }
    fmt::print("\n");
  }
  return {{"layer", 1},
          {"micro_batch", B},
          {"ctx", T},
          {"n_embd", D},
          {"fp32", {{"forward", pass_json(fp32.forward, tokens, D)}, {"backward", pass_json(fp32.backward, tokens, D)}}},
          {"bf16",
           {{"forward", pass_json(bf16.forward, tokens, D)}, {"backward", pass_json(bf16.backward, tokens, D)}}}};
}

}  // namespace rwkv::bench
