#!/usr/bin/env bash
# Our speed against peers in ONE run, same shapes, fp32 on the CPU, same thread count:
#   WKV op          rwkv bench wkv       vs transformers' CPU WKV path (and our ATen per-step loop)
#   training step   rwkv bench train     vs transformers' RwkvForCausalLM step (forward, CE, backward, clip, Adam)
#   generation      rwkv bench generate  vs the `rwkv` package 'cpu fp32', on the same weights: a random
#                   RwkvForCausalLM saved by transformers, read by us as an HF folder, and given to the
#                   package as the .pth that `rwkv export` writes from it
# Prints the ratio table and writes all figures to $OUT (JSON). Shapes default to RWKV-4 169M
# (L=12, D=768, V=50277) at micro-batch 1 x ctx 256 so the whole run takes a few minutes on 2 cores.
#   scripts/bench_peers.sh                                 (after scripts/build.sh)
#   THREADS=4 L=24 D=1024 CTX=512 OUT=peers.json scripts/bench_peers.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${BUILD_DIR:-build}/bin/rwkv"
py="$root/.venv/bin/python"
[[ -x $bin ]] || { echo "bench_peers: $bin not found; run scripts/build.sh first" >&2; exit 1; }
[[ -x $py ]] || { echo "bench_peers: $py not found; run scripts/setup.sh first" >&2; exit 1; }

THREADS="${THREADS:-2}" L="${L:-12}" D="${D:-768}" V="${V:-50277}"
MB="${MB:-1}" CTX="${CTX:-256}" STEPS="${STEPS:-3}"
WKV_B="${WKV_B:-4}" WKV_T="${WKV_T:-512}" GEN_CTX="${GEN_CTX:-0,1024}" GEN_TOKENS="${GEN_TOKENS:-32}"
OUT="${OUT:-runs/bench-peers.json}"  # runs/ is git-ignored
mkdir -p "$(dirname "$OUT")"
export OMP_NUM_THREADS="$THREADS"  # LibTorch's default thread count follows it; the helper also sets torch's
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
peer() { "$py" scripts/bench_peers.py --threads "$THREADS" "$@"; }

printf 'model:\n  n_layer: %s\n  n_embd: %s\n  vocab_size: %s\n' "$L" "$D" "$V" > "$tmp/model.yaml"

echo "== WKV op: B=$WKV_B T=$WKV_T C=$D"
"$bin" bench wkv --B "$WKV_B" --T "$WKV_T" --C "$D" --json "$tmp/ours-wkv.json"
peer wkv --B "$WKV_B" --T "$WKV_T" --C "$D" --json "$tmp/peer-wkv.json"

echo "== training step: L=$L D=$D V=$V, $MB x $CTX tokens"
"$bin" bench train "$tmp/model.yaml" --micro-batch "$MB" --ctx "$CTX" --steps "$STEPS" --json "$tmp/ours-train.json"
peer train --L "$L" --D "$D" --V "$V" --micro-batch "$MB" --ctx "$CTX" --steps "$STEPS" --json "$tmp/peer-train.json"

echo "== generation after ctx $GEN_CTX, same weights"
peer save-hf --L "$L" --D "$D" --V "$V" --out "$tmp/hf"
"$bin" export "$tmp/hf" --format pth --dtype fp32 --out "$tmp/weights.pth"
"$bin" bench generate "$tmp/hf" --ctx "$GEN_CTX" --tokens "$GEN_TOKENS" --json "$tmp/ours-generate.json"
peer generate --pth "$tmp/weights.pth" --V "$V" --ctx "$GEN_CTX" --tokens "$GEN_TOKENS" --json "$tmp/peer-generate.json"

peer report --ours-wkv "$tmp/ours-wkv.json" --peer-wkv "$tmp/peer-wkv.json" \
  --ours-train "$tmp/ours-train.json" --peer-train "$tmp/peer-train.json" \
  --ours-generate "$tmp/ours-generate.json" --peer-generate "$tmp/peer-generate.json" --out "$OUT"
echo "figures: $OUT"
