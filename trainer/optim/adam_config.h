#pragma once
// Adam's hyper-parameters: the recipe's values (trainer/README.md "Optimizer and schedule":
// betas (0.9, 0.99), eps 1e-8, no weight decay). The run config's `optimizer:` section fills
// them (trainer/config/run_config.h); the update itself is trainer/optim/optimizer.h.
namespace rwkv::trainer {

struct AdamConfig {
  double beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  double weight_decay = 0;          // decoupled, on 2-D weight matrices only
};

}  // namespace rwkv::trainer
