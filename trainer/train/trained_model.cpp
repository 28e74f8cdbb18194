#include "trainer/train/trained_model.h"

#include "rwkv/block_recompute.h"
#include "rwkv/init.h"

namespace rwkv::trainer {

TrainedModel build_trained_model(const RunConfig& config, const torch::Device& device) {
  TrainedModel out;
  out.model = RWKV(config.model, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  init_weights(out.model, InitOptions{.seed = config.train.seed, .emb_scale = config.optimizer.lr_init});
  out.forward = [model = out.model, recompute = config.train.activation_checkpointing](const torch::Tensor& tokens) mutable {
    return recompute ? forward_recomputing_blocks(*model, tokens) : model->forward(tokens);
  };
  out.forward_flops_per_token = static_cast<double>(forward_flops_per_token(*out.model));
  return out;
}

}  // namespace rwkv::trainer
