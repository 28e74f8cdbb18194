#pragma once
// Initialisation of RWKV-4 exactly as the reference trainer does it (rwkv/README.md "Initialisation"), deterministic
// from a seed. The reference code differs from the paper's Appendix E, and the code is what
// produced the released checkpoints:
//  - Appendix E: embedding U(±1e-4); the code: U(±lr_init) (the caller passes emb_scale = lr_init).
//  - Appendix E: W_o and W'_v ~ N(0, 2); the code: zeros for att.output and ffn.value (and for
//    att.key, att.receptance, ffn.receptance), orthogonal for att.value, ffn.key and head.
//  - The paper writes time_mix_r = 0.5·(c/D)^r1; the code uses (c/D)^(0.5·r1).
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "rwkv/model.h"

namespace rwkv {

struct InitOptions {
  uint64_t seed = 0;
  // emb.weight ~ U(−emb_scale, +emb_scale); the reference uses the optimizer's lr_init here.
  double emb_scale = 1e-4;
};

// The rule for one parameter, by its state_dict name, as a human-readable formula
// (`rwkv info`'s table). Throws std::invalid_argument for a name the model does not have.
std::string init_rule(const std::string& name, const ModelConfig& config, const InitOptions& options);

// Fills every parameter of `model` (any device and float dtype; random numbers are drawn on the
// CPU from one generator seeded with options.seed, in parameter order, so the result does not
// depend on the device). The rules are those init_rule describes.
void init_weights(RWKV& model, const InitOptions& options);

}  // namespace rwkv
