#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build, run the [cuda] tests (which skip elsewhere) and the
# GPU benchmarks, in one command. Fails loudly where torch sees no GPU, so a "pass" always means
# the kernels really ran.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build.sh"
bin="${BUILD_DIR:-build}/bin"
if ! "$bin/rwkv" env | grep -Eq '^cuda devices: [1-9]'; then
  "$bin/rwkv" env >&2
  echo "gpu-check: no CUDA device visible; run this on a GPU machine" >&2
  exit 1
fi
"$bin/rwkv" env
echo "== [cuda] tests"
"$bin/rwkv_tests" "[cuda]" --order lex
