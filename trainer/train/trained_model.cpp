#include "trainer/train/trained_model.h"

#include "rwkv/block_recompute.h"
#include "rwkv/init.h"
#include "rwkv/rnn.h"
#include "trainer/train/train_step.h"

namespace rwkv::trainer {

TrainedModel build_trained_model(const RunConfig& config, const torch::Device& device) {
  TrainedModel out;
  // Built in the dtype it trains in: a bf16 model never exists in fp32 whole on the device (the
  // optimizer takes the fp32 masters from it, sharded: trainer/dist/parallel_optimizer.h).
  out.model = RWKV(config.model, torch::TensorOptions().dtype(compute_dtype(config, device)).device(device));
  init_weights(out.model, InitOptions{.seed = config.train.seed, .emb_scale = config.optimizer.lr_init});
  const bool recompute = config.train.activation_checkpointing;
  out.forward.fresh = [model = out.model, recompute](const torch::Tensor& tokens) mutable {
    return recompute ? forward_recomputing_blocks(*model, tokens) : model->forward(tokens);
  };
  out.forward.from_state = [model = out.model, recompute](const torch::Tensor& tokens, RnnState& state) mutable {
    return recompute ? forward_recomputing_blocks(*model, tokens, &state) : model->forward(tokens, state);
  };
  out.forward.initial_state = [model = out.model](int64_t batch) {
    return initial_state(model->config(), batch, model->emb->weight.options());
  };
  out.forward_flops_per_token = static_cast<double>(forward_flops_per_token(*out.model));
  return out;
}

}  // namespace rwkv::trainer
