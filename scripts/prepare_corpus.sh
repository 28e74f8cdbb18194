#!/usr/bin/env bash
# The bundled demo corpus: the King James Bible (public domain; 4.4 MB of English text) from
# Debian's bible-kjv packages (scripts/setup.sh installs them), one document per book, tokenized
# with the byte-level tokenizer into a binidx pair. Idempotent: prepares it on first use only.
#   scripts/prepare_corpus.sh        prints the binidx prefix (data/corpus/kjv_byte) on stdout
# Environment: RWKV (the rwkv binary; default build/bin/rwkv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/data/corpus/kjv_byte"
if [[ -f $prefix.bin && -f $prefix.idx ]]; then
  echo "$prefix"
  exit 0
fi
if ! command -v bible >/dev/null; then
  echo "[corpus] error: the 'bible' program is missing; install Debian's bible-kjv (scripts/setup.sh does)" >&2
  exit 1
fi
rwkv="${RWKV:-$root/build/bin/rwkv}"
[[ -x $rwkv ]] || { echo "[corpus] error: $rwkv not built (scripts/build.sh)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/books" "$root/data/corpus"
# -f turns pretty-printing off: one verse per line, "Ge1:1 In the beginning ...".
bible -f "gen1:1-rev22:21" </dev/null >"$tmp/kjv.txt"
# Split into books (numbered in canonical order so that prep's sorted order keeps it) and drop
# the verse references, leaving plain text.
awk -v dir="$tmp/books" '
  match($0, /^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ /) {
    ref = substr($0, 1, RLENGTH - 1); book = ref; sub(/[0-9]+:[0-9]+$/, "", book)
    if (book != cur) { if (file != "") close(file); cur = book; n++; file = sprintf("%s/%02d-%s.txt", dir, n, book) }
    print substr($0, RLENGTH + 1) > file
  }' "$tmp/kjv.txt"
books=$(ls "$tmp/books" | wc -l)
if [[ $books -ne 66 ]]; then
  echo "[corpus] error: expected the 66 books of the KJV, found $books (bible output changed?)" >&2
  exit 1
fi
"$rwkv" prep "$tmp/books" -o "$prefix" --tokenizer byte --quiet >&2
echo "$prefix"
