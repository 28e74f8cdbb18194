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

# Figures (printed, not asserted): the WKV kernel's achieved bandwidth, sequential and chunked
# (RWKV_WKV_CHUNK, kernels/wkv_op_cuda.cpp) at a small batch and a long context where the
# chunked form should pay, and tokens/s and MFU of a training step of the 169M and 1.5B configs
# (bf16 autocast; MFU against the GEMMs alone and against the device's table peak).
echo "== WKV kernel: B=8 T=4096 C=768 bf16, then B=1 T=16384 C=2048 sequential vs chunked (256)"
"$bin/rwkv" bench wkv --device cuda --dtype bf16 --B 8 --T 4096 --C 768 --runs 10 --warmup 3
"$bin/rwkv" bench wkv --no-loop --device cuda --dtype bf16 --B 1 --T 16384 --C 2048 --runs 10 --warmup 3
RWKV_WKV_CHUNK=256 "$bin/rwkv" bench wkv --no-loop --device cuda --dtype bf16 --B 1 --T 16384 --C 2048 --runs 10 --warmup 3
echo "== training step, 169M: micro-batch 8 x ctx 1024"
"$bin/rwkv" bench train configs/rwkv4-169m.yaml --device cuda --micro-batch 8 --ctx 1024 --steps 10 --warmup 3
echo "== training step, 1.5B: micro-batch 4 x ctx 1024"
"$bin/rwkv" bench train configs/rwkv4-1b5.yaml --device cuda --micro-batch 4 --ctx 1024 --steps 10 --warmup 3
echo "== generation, 169M random weights, after 1k/8k/64k tokens"
"$bin/rwkv" bench generate configs/rwkv4-169m.yaml --device cuda --ctx 1024,8192,65536 --tokens 64
