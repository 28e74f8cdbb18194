#include "tests/support/test_trainer_fixtures.h"

#include "trainer/checkpoint/init_weights_file.h"
#include "trainer/train/trained_model.h"

namespace rwkv::test::trainer {
namespace {

// A bigram language model (embedding → linear head): enough to exercise the loop's mechanics and
// to reach the Markov source's floor, independent of the RWKV model's own tests.
struct BigramImpl : torch::nn::Module {
  BigramImpl(int64_t V, int64_t D)
      : emb(register_module("emb", torch::nn::Embedding(V, D))),
        head(register_module("head", torch::nn::Linear(torch::nn::LinearOptions(D, V).bias(false)))) {}
  torch::Tensor forward(const torch::Tensor& tokens) { return head(emb(tokens)); }
  torch::nn::Embedding emb;
  torch::nn::Linear head;
};
TORCH_MODULE(Bigram);

}  // namespace

TrainEnv make_env(const RunConfig& config, int64_t branches) {
  torch::manual_seed(config.train.seed);
  Bigram model(config.model.vocab_size, config.model.n_embd);
  TrainEnv env;
  env.model = model.ptr();
  env.forward.fresh = [model](const torch::Tensor& tokens) mutable { return model->forward(tokens); };
  env.data = [V = config.model.vocab_size, branches](const Stage& s) {
    return std::make_unique<MarkovSource>(V, branches, s.ctx_len);
  };
  return env;
}

TrainEnv make_rwkv_env(const RunConfig& config, int64_t branches) {
  const TrainedModel model = build_trained_model(config, run_device(config));
  TrainEnv env;
  env.model = model.model.ptr();
  env.forward = model.forward;
  env.data = [V = config.model.vocab_size, branches](const Stage& s) {
    return std::make_unique<MarkovSource>(V, branches, s.ctx_len);
  };
  env.forward_flops_per_token = model.forward_flops_per_token;
  env.read_weights = [m = config.model](const std::string& path) { return read_init_weights(path, m); };
  return env;
}

}  // namespace rwkv::test::trainer
