#pragma once
// The ByteLevel pre-tokenizer's split (Hugging Face tokenizers, GPT-2's pattern)
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as a hand-written scanner over code points: at each position the first alternative that
// matches wins, each greedy; `\s+(?!\S)` leaves the last space of a run to start the next word.
#include <string_view>
#include <vector>

namespace rwkv::data {

// Appends the pieces of valid UTF-8 `text` (views into it, covering it without gaps).
void gpt2_split(std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace rwkv::data
