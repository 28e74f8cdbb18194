#!/usr/bin/env bash
# The paper's Fig. 6 in miniature (test loss falls as the context grows): the demo model (2 layers,
# D = 128, bytes) is trained on the KJV Bible without five held-out books, in three stages
# 128 → 2048 → 16384 tokens of context, the last in segments of 2048 (train.segment_len,
# trainer/README.md "Context beyond memory"). After each stage `rwkv eval` scores the held-out
# books in windows of 128, 2048 and 16384 tokens; the table goes to stdout and OUT/table.md.
#   scripts/context_extension_demo.sh [OUT]     (default runs/context-extension; ~5 min on 2 cores)
# Environment: RWKV (the rwkv binary; default build/bin/rwkv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$root/runs/context-extension}")"
rwkv="${RWKV:-$root/build/bin/rwkv}"
[[ -x $rwkv ]] || { echo "[ctx-demo] error: $rwkv not built (scripts/build.sh)" >&2; exit 1; }
command -v bible >/dev/null || { echo "[ctx-demo] error: the 'bible' program is missing (Debian bible-kjv)" >&2; exit 1; }
if [[ -e $out ]]; then
  echo "[ctx-demo] error: $out exists; remove it or name another folder" >&2
  exit 1
fi
mkdir -p "$out/train" "$out/heldout"

# Held out: Ruth, Ecclesiastes, Mark, Romans, Hebrews (≈ 6% of the text), one document each.
heldout=" Ruth Eccl Mark Rom Heb "
bible -f "gen1:1-rev22:21" </dev/null | awk -v dir="$out" -v held="$heldout" '
  match($0, /^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ /) {
    ref = substr($0, 1, RLENGTH - 1); book = ref; sub(/[0-9]+:[0-9]+$/, "", book)
    if (book != cur) {
      if (file != "") close(file)
      cur = book; n++
      file = sprintf("%s/%s/%02d-%s.txt", dir, index(held, " " book " ") ? "heldout" : "train", n, book)
    }
    print substr($0, RLENGTH + 1) > file
  }'
"$rwkv" prep "$out/train" -o "$out/train_byte" --tokenizer byte --quiet
"$rwkv" prep "$out/heldout" -o "$out/heldout_byte" --tokenizer byte --quiet

# The demo's model and optimizer; three stages of about 600k, 250k and 500k tokens.
cat > "$out/run.yaml" <<EOF
model: {n_layer: 2, n_embd: 128, vocab_size: 256}
data: {path: $out/train_byte, tokenizer: byte, sampler: random}  # magic_prime needs more data at 16k
train: {run_dir: $out/run, micro_batch: 16, epoch_samples: 3200, seed: 1, device: cpu, threads: 2}
optimizer: {lr_init: 2.0e-3, lr_final: 2.0e-4, warmup_steps: 20}
checkpoint: {every_steps: 1000, keep: 3}
log: {every_steps: 50}
stages:
  - {ctx_len: 128, steps: 300}
  - {ctx_len: 2048, micro_batch: 2, steps: 60, lr_init: 4.0e-4, lr_final: 4.0e-4, warmup_steps: 10}
  - {ctx_len: 16384, micro_batch: 1, steps: 30, segment_len: 2048, lr_init: 4.0e-4, lr_final: 4.0e-4, warmup_steps: 5}
EOF

declare -A loss
eval_at() {  # checkpoint stage-name
  for ctx in 128 2048 16384; do
    loss[$2,$ctx]=$("$rwkv" eval "$1" --data "$out/heldout_byte" --ctx-len "$ctx" --batch 4 --segment-len 2048 \
                      --device cpu 2>/dev/null | sed -n 's/.* loss \([0-9.]*\) nats.*/\1/p')
  done
}
for steps in 300 360 390; do
  "$rwkv" train "$out/run.yaml" --set train.max_steps=$steps --set sample.length=0 > "$out/train-$steps.log" 2>&1
  eval_at "$out/run/checkpoints/step-$(printf %08d "$steps")" "$steps"
done

{
  echo "| after stage (trained ctx) | held-out loss, windows of 128 | 2048 | 16384 |"
  echo "|---|---|---|---|"
  for s in "300:0 (128)" "360:1 (2048)" "390:2 (16384, segments of 2048)"; do
    steps=${s%%:*}
    echo "| ${s#*:} | ${loss[$steps,128]} | ${loss[$steps,2048]} | ${loss[$steps,16384]} |"
  done
  echo
  echo "nats per byte over $(du -cb "$out"/heldout/*.txt | tail -1 | cut -f1) bytes of held-out text (Ruth, Ecclesiastes, Mark, Romans, Hebrews)"
} | tee "$out/table.md"
