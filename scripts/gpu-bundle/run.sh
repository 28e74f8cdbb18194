#!/usr/bin/env bash
# The GPU bundle's runner (built by scripts/gpu-bundle.sh; README.md "GPU checks"). On a machine
# with an NVIDIA GPU and a python3 holding torch 2.11.0+cu130 (nothing else: no packages, no
# network), it checks that every library resolves, runs every [cuda] test (failing if one skips
# for want of a GPU), the WKV, training-step and generation benches, and a short real training
# run with a checkpoint and a resume; then prints a table of the figures, and each timed training
# step next to the cost model's prediction for it (`rwkv bench predict`).
#   run.sh [--cpu] [--long] OUT_DIR      (or RWKV_BUNDLE_OUT=OUT_DIR run.sh)
#   --cpu   the same sequence on the CPU with small shapes: proves the bundle works without a GPU
#   --long  the longer benches as well (4096/8192-token contexts, more steps)
# Writes two files, all that a lent machine's few returned files need to hold: OUT_DIR/log.txt
# (everything printed) and OUT_DIR/figures.json (every bench's JSON under its name). Its scratch
# (the unpacked libraries, kept for a rerun; each bench's JSON and the training run, made afresh)
# goes to RWKV_BUNDLE_WORK (default: $TMPDIR/rwkv-gpu-bundle), never into OUT_DIR or the bundle. A GPU may be lent once, for minutes: so a failed check does not
# stop the run. Every later check still runs, each within a time limit (RWKV_BUNDLE_STEP_S, default
# 300 s) and the whole run within RWKV_BUNDLE_DEADLINE_S (default 540 s: the table is printed before
# a 10-minute command limit); checks past the deadline are skipped. The table comes last, then the
# list of what failed or was skipped, and the exit status is non-zero if anything did. Only a
# machine that cannot run anything (no torch, missing libraries, no GPU) stops it at once.
set -uo pipefail
export PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cpu=0 long=0 out="${RWKV_BUNDLE_OUT:-}"
for a in "$@"; do
  case "$a" in
    --cpu) cpu=1 ;;
    --long) long=1 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "run.sh: unknown option $a (expected --cpu, --long, OUT_DIR)" >&2; exit 2 ;;
    *) out="$a" ;;
  esac
done
[[ -n $out ]] || { echo "run.sh: give an output folder (run.sh OUT_DIR or RWKV_BUNDLE_OUT)" >&2; exit 2; }
work="${RWKV_BUNDLE_WORK:-${TMPDIR:-/tmp}/rwkv-gpu-bundle}"
rm -rf "$work/json" "$work/train-run"
mkdir -p "$out" "$work/json" || exit 2
out="$(cd "$out" && pwd)" work="$(cd "$work" && pwd)"
log="$out/log.txt"
: >"$log"
say() { printf '%s\n' "$*" | tee -a "$log"; }
fail() { say "run.sh: FAILED: $*"; exit 1; }  # the machine cannot run the checks at all
step() { say ""; say "== $*"; }
started=$SECONDS
step_s="${RWKV_BUNDLE_STEP_S:-300}" deadline_s="${RWKV_BUNDLE_DEADLINE_S:-540}"
failed=()
# A check that went wrong: noted, and the run goes on.
failed_check() { failed+=("$*"); say "run.sh: FAILED (going on): $*"; }
# Runs a command with its output into the log, within the step limit and what is left before the
# deadline; a failure (or a timeout, exit 124) is noted and returned, not fatal.
check() {
  local left=$((deadline_s - (SECONDS - started)))
  if ((left < 10)); then
    failed_check "skipped, past the ${deadline_s} s deadline: $*"
    return 1
  fi
  local limit=$((left < step_s ? left : step_s))
  ((limit >= 1)) || limit=1  # timeout 0 would mean no limit
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  ((rc == 124)) && say "run.sh: timed out after $limit s"
  ((rc == 0)) || { failed_check "exit $rc: $*"; return 1; }
}

# --- libraries: the bundle's own, then the torch wheel's (libtorch and the nvidia-* wheels) ----
py="${PYTHON:-python3}"
torch_dir="$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>>"$log")" ||
  fail "$py cannot import torch (set PYTHON to a python3 that has torch 2.11.0+cu130)"
[[ -f $torch_dir/lib/libtorch_cpu.so ]] || fail "no libtorch_cpu.so under $torch_dir/lib"
libdir="$work/lib"
if [[ ! -d $libdir ]]; then
  mkdir -p "$libdir" && "$py" -m tarfile -e "$here/lib.tar.xz" "$libdir" || fail "cannot unpack lib.tar.xz"
fi
ld="$libdir:$torch_dir/lib"
for d in "$torch_dir"/../nvidia/*/lib; do [[ -d $d ]] && ld="$ld:$(cd "$d" && pwd)"; done
export LD_LIBRARY_PATH="$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RWKV_TEST_BINARY_DIR="$here" RWKV_TEST_SOURCE_DIR="$here"
rwkv="$here/bin/rwkv"

step "machine"
[[ -r /etc/os-release ]] && grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release | tee -a "$log"
say "torch: $torch_dir"
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1 | tee -a "$log"
missing="$(ldd "$rwkv" "$here/bin/rwkv_tests" | grep 'not found' | sort -u)"
[[ -z $missing ]] || { say "$missing"; fail "libraries not found (above)"; }
"$rwkv" env 2>&1 | tee -a "$log"; ((PIPESTATUS[0] == 0)) || fail "bin/rwkv env failed (above)"
gpus="$("$rwkv" env | sed -n 's/^cuda devices: .*(torch: \([0-9]*\)).*/\1/p')"
if ((cpu)); then
  dev=cpu
  say "mode: --cpu (small shapes; no GPU needed)"
else
  [[ ${gpus:-0} -ge 1 ]] || fail "torch sees no CUDA device (run with --cpu to check the bundle on a CPU)"
  dev=cuda
fi

step "tests"
if ((cpu)); then
  check "$here/bin/rwkv_tests" "[kernels]~[cuda]" --order lex
else
  # One process per test: a kernel that faults (an illegal address aborts the process) costs its
  # own test, not the rest. Commas in a name are escaped for Catch's test spec.
  while IFS= read -r name; do
    [[ -n $name ]] && check "$here/bin/rwkv_tests" "${name//,/\\,}" --order lex
  done < <("$here/bin/rwkv_tests" "[cuda]" --list-test-names-only)
  skipped="$(grep -c 'skipped: no CUDA device' "$log")"
  ((skipped == 0)) || failed_check "$skipped [cuda] test(s) skipped for want of a GPU although torch sees $gpus"
fi

# --- benches: each writes json/NAME.json ----------------------------------------------------------
bench() {  # bench NAME ARGS...
  local name="$1"; shift
  step "bench $name: $*"
  rm -f "$work/json/$name.json"  # a rerun keeps no figure its failed bench did not make
  check "$rwkv" bench "$@" --json "$work/json/$name.json"
}
# A training step timed by `bench train`, then predicted by `bench predict` for the same run at the
# GEMM rate and copy bandwidth that `bench train` measured: json/NAME.json and json/predict_NAME.json.
train_and_predict() {  # train_and_predict NAME RUN ARGS... -- TIMING ARGS...   (RUN: config, shape, --set)
  local name="$1" run=() measured; shift
  while (($# > 0)) && [[ $1 != -- ]]; do run+=("$1"); shift; done
  shift
  bench "$name" train "${run[@]}" "$@" || return 1
  measured="$("$py" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["gemm_tflops"]["median"], d["copy_gbs"]["median"])' "$work/json/$name.json")" ||
    { failed_check "json/$name.json holds no GEMM rate or copy bandwidth"; return 1; }
  bench "predict_$name" predict "${run[@]}" --peak-tflops "${measured% *}" --bandwidth-gbs "${measured#* }"
}
cfg="$here/configs"
if ((cpu)); then
  bench wkv_seq wkv --device cpu --dtype fp32 --B 1 --T 64 --C 64 --runs 2 --warmup 1
  # The CPU step is fp32: the prediction's census too.
  train_and_predict train_small "$cfg/bundle-train.yaml" --micro-batch 2 --ctx 32 --set train.precision=fp32 \
    -- --device cpu --steps 1 --warmup 0
  bench generate_small generate "$cfg/bundle-train.yaml" --device cpu --ctx 16 --tokens 4 --warmup 1
else
  bench wkv_bf16_B8_T4096_C768 wkv --device cuda --dtype bf16 --B 8 --T 4096 --C 768 --runs 10 --warmup 3
  # The WKV schedule (kernels/wkv_schedule.h): where the policy chooses the chunked kernels, `bench
  # wkv` times the sequential ones too and prints the measured speed-up next to the predicted one.
  # 169M's pretraining shapes (chunked at 8 x 1024 by the prediction, sequential at 16 x 1024), its
  # ctx-8192 stage, and 1.5B's ctx 16384.
  for shape in "8 1024 768" "16 1024 768" "1 8192 768" "1 16384 2048"; do
    read -r b t c <<<"$shape"
    bench "wkv_bf16_B${b}_T${t}_C${c}" wkv --no-loop --device cuda --dtype bf16 --B "$b" --T "$t" --C "$c" --runs 10 --warmup 3
  done
  # Issue 18's targets: 169M at micro-batch 8 x 1024, 1.5B at 4 x 1024 (the configs' grad_accum).
  train_and_predict train_169m "$cfg/rwkv4-169m.yaml" --micro-batch 8 --ctx 1024 -- --device cuda --steps 10 --warmup 3
  train_and_predict train_1b5 "$cfg/rwkv4-1b5.yaml" --micro-batch 4 --ctx 1024 -- --device cuda --steps 5 --warmup 2
  bench generate_169m generate "$cfg/rwkv4-169m.yaml" --device cuda --ctx 1024,8192 --tokens 64
  if ((long)); then
    train_and_predict train_169m_ctx4096 "$cfg/rwkv4-169m.yaml" --micro-batch 2 --ctx 4096 -- --device cuda --steps 10 --warmup 3
    train_and_predict train_1b5_ctx8192 "$cfg/rwkv4-1b5.yaml" --micro-batch 1 --ctx 8192 -- --device cuda --steps 5 --warmup 2
    bench generate_169m_long generate "$cfg/rwkv4-169m.yaml" --device cuda --ctx 65536 --tokens 256
  fi
fi

# --- a real run: 10 steps with a checkpoint, then a resume to step 20 ------------------------------
step "train: 10 steps, checkpoint, resume to 20 ($dev)"
run_dir="$work/train-run"
sets=(--set "data.path=$here/data/bundle_byte" --set "train.run_dir=$run_dir" --set "train.device=$dev")
((cpu)) || sets+=(--set train.precision=bf16)
if check "$rwkv" train "$cfg/bundle-train.yaml" "${sets[@]}" --set train.max_steps=10 &&
  check "$rwkv" train "$cfg/bundle-train.yaml" "${sets[@]}"; then
  grep -q "resumed from .*step-00000010" "$log" || failed_check "the second run did not resume from step 10"
  grep -q "finished at step 20" "$log" || failed_check "the resumed run did not finish at step 20"
fi

# --- figures: one JSON, then the table -------------------------------------------------------------
{
  printf '{"mode": "%s", "seconds": %d' "$dev" $((SECONDS - started))
  for f in "$work"/json/*.json; do [[ -s $f ]] && { printf ',\n"%s": ' "$(basename "$f" .json)"; cat "$f"; }; done
  printf '}\n'
} >"$out/figures.json"
step "figures ($out/figures.json)"
"$py" - "$out/figures.json" <<'PY' | tee -a "$log"
import json, sys
figures = json.load(open(sys.argv[1]))
rows = []
for name, d in figures.items():
    if not isinstance(d, dict):
        continue
    if d.get("bench") == "wkv":
        for part in ("forward", "forward_backward"):
            ms = d.get(part, {}).get("op", {}).get("median_ms")
            if ms is not None:
                rows.append((name, ms, f"{part} ms"))
        if "forward_gb_per_s" in d:
            rows.append((name, d["forward_gb_per_s"], "forward GB/s"))
        if "chunked_speedup" in d:
            rows.append((name, d["chunk"], "tokens a chunk (policy)"))
            rows.append((name, d["chunked_speedup"]["measured"], "chunked/sequential speed-up, measured"))
            rows.append((name, d["chunked_speedup"]["predicted"], "chunked/sequential speed-up, predicted"))
    elif d.get("bench") == "train":
        rows.append((name, d["tokens_per_s"], "tok/s"))
        rows.append((name, d["step"]["median_ms"], "step ms"))
        rows.append((name, 100 * d["mfu_vs_gemm"], "% MFU vs its GEMMs"))
        if "mfu_vs_table" in d:
            rows.append((name, 100 * d["mfu_vs_table"], "% MFU vs the table peak"))
    elif d.get("bench") == "generate":
        for c in d["contexts"]:
            rows.append((name, c["tokens_per_s"], f"tok/s after ctx {c['ctx']}"))
print(f"{'bench':36} {'figure':>12}  what")
for name, v, what in rows:
    print(f"{name:36} {v:12.4g}  {what}")
# Each timed step next to the cost model's prediction at the GEMM rate and bandwidth it measured.
pairs = [(n, figures[n], figures["predict_" + n]) for n in figures if isinstance(figures.get("predict_" + n), dict)]
if pairs:
    print()
    print("measured next to predicted (rwkv bench predict at the GEMM rate and copy bandwidth bench train measured)")
    print(f"{'bench':24} {'config':22} {'predicted ms':>12} {'measured ms':>12} {'measured/pred':>13} "
          f"{'pred MFU':>9} {'meas MFU':>9}")
    for name, m, p in pairs:
        cfg = f"{m['micro_batch']}x{m['ctx']} x{m['grad_accum']} L{m['n_layer']} D{m['n_embd']}"
        ms = m["step"]["median_ms"]
        print(f"{name:24} {cfg:22} {p['step_ms']:12.2f} {ms:12.2f} {ms / p['step_ms']:13.2f} "
              f"{100 * p['mfu_vs_gemm']:8.1f}% {100 * m['mfu_vs_gemm']:8.1f}%")
PY
if ((${#failed[@]} > 0)); then
  say ""
  say "run.sh: ${#failed[@]} check(s) FAILED or skipped in $((SECONDS - started)) s ($dev):"
  for f in "${failed[@]}"; do say "  - $f"; done
  exit 1
fi
say "run.sh: all checks passed in $((SECONDS - started)) s ($dev)"
