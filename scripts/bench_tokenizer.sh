#!/usr/bin/env bash
# Tokenizer throughput: our C++ BPE (through `rwkv prep`, 1 thread and all threads) against the
# Hugging Face `tokenizers` package (one thread, encode per line) on the same text, in one run.
#   scripts/bench_tokenizer.sh [TOKENIZER_JSON] [TEXT_FILE]
# Defaults: ../shared/data/20B_tokenizer.json and the demo corpus text (the KJV, via `bible`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tok="${1:-$root/../shared/data/20B_tokenizer.json}"
rwkv="${RWKV:-$root/build/bin/rwkv}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ $# -ge 2 ]]; then
  cp "$2" "$tmp/text.txt"
else
  bible -f "gen1:1-rev22:21" </dev/null | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' >"$tmp/text.txt"
fi
# One JSON document per line, so both sides encode the same units.
"$root/.venv/bin/python" -c '
import json, sys
with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w") as o:
    for line in f.read().split("\n"):
        o.write(json.dumps({"text": line}) + "\n")' "$tmp/text.txt" "$tmp/text.jsonl"
echo "text: $(wc -c <"$tmp/text.txt") bytes; tokenizer: $tok"
py=$("$root/.venv/bin/python" "$root/tests/data/hf_tokenize.py" bench "$tok" "$tmp/text.txt")
echo "tokenizers (Python package, 1 thread): $py"
for threads in 1 0; do
  out=$("$rwkv" prep "$tmp/text.jsonl" -o "$tmp/out" --tokenizer "$tok" --threads $threads --quiet)
  echo "rwkv prep --threads $threads (0 = all cores):" $(echo "$out" | grep -E '^  (tokens|time):')
done
