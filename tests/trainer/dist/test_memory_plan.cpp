// The memory planner (trainer/dist/memory_plan.h) against the real module definition: parameter
// bytes from a meta-device model, and the sharding arithmetic of DDP / ZeRO-1 / ZeRO-2.
#include "rwkv/model.h"
#include "tests/support/test_util.h"
#include "trainer/dist/memory_plan.h"

using rwkv::Sharding;

namespace {

double meta_param_count(const rwkv::ModelConfig& c) {
  const rwkv::RWKV m(c, torch::TensorOptions().device(torch::kMeta));
  double n = 0;
  for (const auto& p : m->parameters()) n += static_cast<double>(p.numel());
  return n;
}

}  // namespace

TEST_CASE("plan: model state equals the module's parameters, sharded as ZeRO says", "[dist]") {
  rwkv::ModelConfig c;
  c.n_layer = 5;
  c.n_embd = 96;
  c.vocab_size = 1000;
  c.dim_att = 64;  // A ≠ D and F ≠ 4D exercise the general terms
  c.dim_ffn = 200;
  const double P = meta_param_count(c);
  rwkv::PlanRequest req;
  req.model = c;
  req.gpus = 8;
  req.micro_batch = 2;
  req.ctx_len = 64;

  const auto ddp = rwkv::estimate_memory(req, Sharding::DDP);
  REQUIRE(ddp.weights == Approx(2 * P));  // bf16 working copy
  REQUIRE(ddp.grads == Approx(4 * P));
  REQUIRE(ddp.master == Approx(4 * P));
  REQUIRE(ddp.adam == Approx(8 * P));
  const auto z1 = rwkv::estimate_memory(req, Sharding::ZeRO1);
  REQUIRE(z1.weights == Approx(2 * P));
  REQUIRE(z1.grads == Approx(4 * P + 4 * P / 8));  // the whole sums and the reduced shard
  // Up to 5 buckets of the all-reduce in flight, but no more than there are (one, this small).
  const double bucket = std::min(req.bucket_bytes, 4 * P);
  REQUIRE(bucket == Approx(4 * P));
  REQUIRE(z1.update_buffers == Approx(bucket));
  REQUIRE(z1.master == Approx(4 * P / 8));
  REQUIRE(z1.adam == Approx(8 * P / 8));
  const auto z2 = rwkv::estimate_memory(req, Sharding::ZeRO2);
  REQUIRE(z2.grads == Approx(4 * P / 8));
  REQUIRE(z2.staging == Approx(bucket + bucket / 8));  // the one bucket, with its part
  REQUIRE(z2.head_staging == z2.staging);              // the head's gradient fills it at once
  REQUIRE(z2.total(false) == Approx(z2.state() + std::max(z2.staging, z2.head) + z2.incoming + z2.activations));
  req.bucket_bytes = 4 * P / 10;  // ten buckets: 4 in flight, one being filled
  const auto z2_10 = rwkv::estimate_memory(req, Sharding::ZeRO2);
  REQUIRE(z2_10.staging == Approx(5 * (req.bucket_bytes + req.bucket_bytes / 8)));
  // The head weight (V·D of the P parameters, last in the flat view) spans 2 of the ten buckets:
  // they are what its gradient fills at the start of backward, beside every activation.
  REQUIRE(std::ceil(10.0 * c.vocab_size * c.n_embd / P) == 2);
  REQUIRE(z2_10.head_staging == Approx(2 * (req.bucket_bytes + req.bucket_bytes / 8)));
  REQUIRE(z2_10.total(false) ==
          Approx(z2_10.state() + z2_10.activations +
                 std::max(z2_10.incoming + std::max(z2_10.head, z2_10.head_staging), z2_10.staging)));
  // The update gathers in place: one compute-dtype bucket each, five at most.
  REQUIRE(z2_10.update_buffers == Approx(5 * req.bucket_bytes * 2 / 4));
  REQUIRE(z2.activations == ddp.activations);  // sharding never changes activations

  req.compute_bytes = 4;  // fp32: the weights are the master copy
  const auto fp32 = rwkv::estimate_memory(req, Sharding::DDP);
  REQUIRE(fp32.weights == Approx(4 * P));
  REQUIRE(fp32.master == 0);
}

TEST_CASE("plan: activations scale with tokens; checkpointing keeps one block", "[dist]") {
  rwkv::PlanRequest req;
  req.model.n_layer = 24;
  req.model.n_embd = 2048;
  req.model.vocab_size = 50277;
  req.micro_batch = 1;
  req.ctx_len = 1024;
  const auto a = rwkv::estimate_memory(req, Sharding::DDP);
  req.ctx_len = 4096;
  const auto b = rwkv::estimate_memory(req, Sharding::DDP);
  REQUIRE(b.activations == Approx(4 * a.activations));
  REQUIRE(b.head == Approx(4 * a.head));
  // 26·D kept per token per block for A = D, F = 4D (itemised in memory_plan.cpp).
  REQUIRE(rwkv::block_activation_elems_per_token(req.model) == 26 * 2048);
  REQUIRE(a.activations_ckpt < a.activations / 10);
}

TEST_CASE("plan: segments hold one segment's activations plus the boundary states", "[dist]") {
  rwkv::PlanRequest req;
  req.model.n_layer = 12;
  req.model.n_embd = 768;
  req.model.vocab_size = 50277;
  req.micro_batch = 2;
  req.ctx_len = 1024;
  const auto short_ctx = rwkv::estimate_memory(req, Sharding::DDP);
  req.ctx_len = 16384;
  req.segment_len = 1024;
  const auto seg = rwkv::estimate_memory(req, Sharding::DDP);
  CHECK(seg.activations == Approx(short_ctx.activations));
  CHECK(seg.head == Approx(short_ctx.head));
  // 15 boundaries × 2 rows × 12 blocks × (2·768 + 3·768) fp32 numbers.
  CHECK(seg.boundaries == Approx(15.0 * 2 * 12 * 5 * 768 * 4));
  CHECK(seg.state() - short_ctx.state() == Approx(seg.boundaries));
  req.segment_len = 20000;  // not below ctx_len: one segment, nothing saved
  const auto whole = rwkv::estimate_memory(req, Sharding::DDP);
  CHECK(whole.boundaries == 0);
  CHECK(whole.activations == Approx(16 * short_ctx.activations));
}

TEST_CASE("rwkv plan prints the 14B table and recommends a sharding", "[dist]") {
  const std::string bin = rwkv::test::rwkv_binary().string();
  const std::string cfg = (rwkv::test::source_dir() / "configs/rwkv4-14b.yaml").string();
  std::string out;
  REQUIRE(rwkv::test::run(bin + " plan " + cfg + " --gpus 64 --gpu-mem 80 --ctx 8192", &out) == 0);
  INFO(out);
  REQUIRE_THAT(out, Catch::Contains("ZeRO-2"));
  REQUIRE_THAT(out, Catch::Contains("recommended: "));
  // 14.15B parameters on 8 GPUs: DDP needs 18 bytes/param = 255 GB per GPU; it cannot fit in 80 GB.
  REQUIRE(rwkv::test::run(bin + " plan " + cfg + " --gpus 8 --gpu-mem 80", &out) == 0);
  REQUIRE_THAT(out, Catch::Contains("DDP         no"));
  REQUIRE(rwkv::test::run(bin + " plan " + cfg + " --gpus 0", &out) != 0);
}
