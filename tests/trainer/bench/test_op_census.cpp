// The kernel census (trainer/bench/op_census.h) against hand counts: a known sequence of
// operators (views, allocations, composites, in-place, a RECORD_FUNCTION kernel), and the GEMMs
// of one block, whose number and bytes follow from the shapes alone.
#include <ATen/record_function.h>
#include <catch2/catch.hpp>

#include "trainer/bench/op_census.h"

namespace {

using rwkv::bench::OpCensus;
using rwkv::bench::OpCensusRecorder;

}  // namespace

TEST_CASE("census: a known operator sequence gives the hand count", "[bench]") {
  const torch::Tensor x = torch::randn({4, 8});  // 128 bytes
  const torch::Tensor w = torch::randn({8, 3});  // 96 bytes
  const torch::Tensor wt = torch::randn({3, 8});
  OpCensusRecorder recorder;
  // add: x once (the same tensor twice) + y: 256 bytes.
  const torch::Tensor y = x + x;
  // Views and allocations launch nothing.
  const torch::Tensor yt = y.t();
  const torch::Tensor e = torch::empty({10});
  // mm: y + w + (4, 3) result: 128 + 96 + 48.
  const torch::Tensor m = torch::mm(y, w);
  // In place: x and y, the result being x: 256.
  x.mul_(y);
  // zeros = empty + a fill: one launch of 128 bytes.
  const torch::Tensor z = torch::zeros({4, 8});
  // A kernel of our own announcing its two tensors: 128 + 96.
  {
    RECORD_FUNCTION("rwkv::test_kernel", std::vector<c10::IValue>({x, w}));
  }
  // linear (composite: t, matmul) = one mm: x + wt's transposed view + (4, 3) result.
  const torch::Tensor l = torch::nn::functional::linear(x, wt);
  const OpCensus c = recorder.take();

  CHECK(c.total().launches == 6);
  CHECK(c.gemm().launches == 2);
  CHECK(c.by_op.at("aten::mm").launches == 2);
  CHECK(c.by_op.at("aten::add").launches == 1);
  CHECK(c.by_op.at("aten::add").bytes == 256);
  CHECK(c.by_op.at("aten::mul_").bytes == 256);
  CHECK(c.by_op.at("rwkv::test_kernel").bytes == 224);
  CHECK(c.gemm().bytes == 2 * (128 + 96 + 48));
  CHECK(c.total().bytes == 256 + 272 + 256 + 128 + 224 + 272);
  // take() starts afresh.
  CHECK(recorder.take().total().launches == 0);
  CHECK_THROWS(OpCensusRecorder());
}

TEST_CASE("census: one block's GEMMs, forward and backward, as the shapes say, and its own kernels", "[bench]") {
  rwkv::ModelConfig config;
  config.n_layer = 2;
  config.n_embd = 8;
  config.vocab_size = 16;
  const int64_t B = 2, T = 5, D = 8, F = 4 * D, N = B * T;
  const rwkv::bench::BlockCensus c = rwkv::bench::census_block(config, B, T, torch::kFloat32);
  // Seven Linear layers: att key, value, receptance (D → D), output (D → D); ffn key (D → F),
  // receptance (D → D), value (F → D). Each forward mm touches input, weight and output.
  const auto mm = [&](int64_t in, int64_t out) { return 4 * (N * in + out * in + N * out); };
  CHECK(c.forward.gemm().launches == 7);
  CHECK(c.forward.gemm().bytes == 5 * mm(D, D) + mm(D, F) + mm(F, D));
  // Backward: every Linear's input needs a gradient (x does), so two products each; each touches
  // the same three tensors' sizes (grad output, weight or input, grad input or grad weight).
  CHECK(c.backward.gemm().launches == 14);
  CHECK(c.backward.gemm().bytes == 2 * (5 * mm(D, D) + mm(D, F) + mm(F, D)));
  // The WKV kernels are counted once each.
  CHECK(c.forward.by_op.at("rwkv::wkv_forward").launches == 1);
  CHECK(c.backward.by_op.at("rwkv::wkv_backward").launches == 1);
  // So are the fused gates (TimeMix's and ChannelMix's) and relu² (rwkv/gates.h): no ATen sigmoid,
  // relu or square is left.
  CHECK(c.forward.by_op.at("rwkv::gate_forward").launches == 2);
  CHECK(c.backward.by_op.at("rwkv::gate_backward").launches == 2);
  CHECK(c.forward.by_op.at("rwkv::relu_square_forward").launches == 1);
  CHECK(c.backward.by_op.at("rwkv::relu_square_backward").launches == 1);
  for (const char* op : {"aten::sigmoid", "aten::clamp_min", "aten::pow"}) CHECK(c.forward.by_op.count(op) == 0);
}

TEST_CASE("census: one block's forward launches no per-call casts, fills or copies, fp32 and bf16", "[bench]") {
  // The WKV kernels start a fresh sequence from the empty state themselves and compute
  // w = −exp(time_decay) from the parameter as stored; the token-shift mixes read μ as stored
  // (kernels/README.md): no zeros/fill/clone for the state, no exp/neg, no parameter casts.
  rwkv::ModelConfig config;
  config.n_layer = 2;
  config.n_embd = 8;
  config.vocab_size = 16;
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const rwkv::bench::BlockCensus c = rwkv::bench::census_block(config, 2, 5, dtype);
    CAPTURE(dtype);
    for (const char* op : {"aten::zero_", "aten::fill_", "aten::copy_", "aten::exp", "aten::neg"})
      CHECK(c.forward.by_op.count(op) == 0);
    // 7 GEMMs, 2 LayerNorms, 2 token-shift mixes, WKV, 2 gates, relu², 2 residual adds.
    CHECK(c.forward.total().launches == 17);
    // Nor does the backward cast the parameters' gradients, or zero-fill the unused final WKV state's.
    for (const char* op : {"aten::copy_", "aten::mul"}) CHECK(c.backward.by_op.count(op) == 0);
    // Both LayerNorms' backward counted as themselves, not as the zero fill ATen's CPU kernel
    // does inside.
    REQUIRE(c.backward.by_op.count("aten::native_layer_norm_backward") == 1);
    CHECK(c.backward.by_op.at("aten::native_layer_norm_backward").launches == 2);
    CHECK(c.backward.by_op.count("aten::zero_") == 0);
  }
}
