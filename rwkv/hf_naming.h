#pragma once
// Names of the same weights in Hugging Face transformers' RWKV (RwkvForCausalLM, model_type
// "rwkv"): the reference key ↔ transformers key mapping its conversion script applies. Shapes are
// identical on both sides (time_mix stays (1,1,D), time_decay stays the raw parameter).
//   emb.weight                 ↔ rwkv.embeddings.weight
//   blocks.0.ln0.*             ↔ rwkv.blocks.0.pre_ln.*
//   blocks.N.ln1.* / ln2.*     ↔ rwkv.blocks.N.ln1.* / ln2.*
//   blocks.N.att.time_mix_k|v|r ↔ rwkv.blocks.N.attention.time_mix_key|value|receptance
//   blocks.N.att.*             ↔ rwkv.blocks.N.attention.*
//   blocks.N.ffn.time_mix_k|r  ↔ rwkv.blocks.N.feed_forward.time_mix_key|receptance
//   blocks.N.ffn.*             ↔ rwkv.blocks.N.feed_forward.*
//   ln_out.*                   ↔ rwkv.ln_out.*
//   head.weight                ↔ head.weight
#include <string>

namespace rwkv {

// Throws std::invalid_argument naming the key when it is not an RWKV-4 weight name.
std::string reference_to_hf_name(const std::string& reference_key);
std::string hf_to_reference_name(const std::string& hf_key);

}  // namespace rwkv
